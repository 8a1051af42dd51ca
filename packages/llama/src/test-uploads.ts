// Test helpers (not part of the package).
/**
 * A backend seen through a proxy that records the dtype of
 * every upload (by label) and can deny some types, so a test sees which
 * element types a model's tensors were uploaded as.
 */
import type { Backend, DType, TensorDesc } from '@rama/backend';

/** `be` seen through a proxy that records the dtype of every upload and denies the types in `hide`. */
export function recordingUploads(be: Backend, hide: readonly DType[] | false = false): { backend: Backend; uploads: Map<string, DType> } {
  const uploads = new Map<string, DType>();
  const backend = new Proxy(be, {
    get(target, key) {
      if (key === 'supports') return (d: DType) => !(hide && hide.includes(d)) && target.supports(d);
      if (key === 'upload') {
        return (desc: TensorDesc, data: Parameters<Backend['upload']>[1]) => {
          uploads.set(desc.label, desc.dtype);
          return target.upload(desc, data);
        };
      }
      const v = Reflect.get(target, key, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { backend, uploads };
}
