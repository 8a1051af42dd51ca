/** What both pages (the example and the playground) need from the DOM. */

/** The element with this id; a page without it is a bug in the page. */
export const el = <T extends Element = HTMLElement>(id: string): T => {
  const e = document.getElementById(id);
  if (!e) throw new Error(`missing #${id}`);
  return e as unknown as T;
};

export type State = 'idle' | 'loading' | 'generating' | 'done' | 'error';

/** Shows a state in `status` (text, and data-state for the tests). */
export function showStatus(status: HTMLElement, state: State, text: string): void {
  status.dataset.state = state;
  status.textContent = text;
}

/** A number field's value: undefined when empty, an Error naming the field when out of range or not a number. */
export function numberInput(input: HTMLInputElement, name: string, opts: { integer?: boolean; min?: number; max?: number } = {}): number | undefined {
  const raw = input.value.trim();
  if (raw === '') return undefined;
  const v = Number(raw);
  if (!Number.isFinite(v) || (opts.integer && !Number.isInteger(v)) || (opts.min !== undefined && v < opts.min) || (opts.max !== undefined && v > opts.max)) {
    throw new Error(`${name}: ${JSON.stringify(raw)} is not a valid value`);
  }
  return v;
}
