import { describe, expect, it } from 'vitest';
import { AbortError, ArgumentError, BackendError, FormatError, NumericError, RamaError } from './index.js';

describe('errors', () => {
  it('every class is a RamaError with a stable code and its own name', () => {
    const cases: [RamaError, string, string][] = [
      [new FormatError('f'), 'E_FORMAT', 'FormatError'],
      [new ArgumentError('a'), 'E_ARGUMENT', 'ArgumentError'],
      [new BackendError('b'), 'E_BACKEND', 'BackendError'],
      [new NumericError('n'), 'E_NUMERIC', 'NumericError'],
      [new AbortError(), 'E_ABORTED', 'AbortError'],
    ];
    for (const [e, code, name] of cases) {
      expect(e).toBeInstanceOf(RamaError);
      expect(e).toBeInstanceOf(Error);
      expect(e.code).toBe(code);
      expect(e.name).toBe(name);
    }
    expect(new AbortError().message).toBe('aborted');
  });

  it('a subclass of a Rama error is named after itself', () => {
    class DeviceLostError extends BackendError {}
    expect(new DeviceLostError('lost').name).toBe('DeviceLostError');
    expect(new DeviceLostError('lost')).toBeInstanceOf(BackendError);
  });

  it('keeps a cause', () => {
    const cause = new Error('root');
    expect(new FormatError('x', { cause }).cause).toBe(cause);
    expect(new BackendError('x', { cause }).cause).toBe(cause);
  });
});
