/**
 * Every error Rama throws on purpose is a RamaError with a stable `code`, so
 * callers (and the CLI) can tell bad input from a bug. Messages name the file
 * or argument and say what was expected versus what was found.
 */
export class RamaError extends Error {
  /** Stable across versions: E_FORMAT, E_ARGUMENT, E_BACKEND, E_NUMERIC, E_ABORTED (subclasses set it). */
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    // Spelt out for Rama's own classes: a minifier renames classes, and `name` would read "G".
    this.name = NAMES.get(new.target) ?? new.target.name;
    this.code = code;
  }
}

/** A checkpoint or tokenizer file is malformed or does not match its header. */
export class FormatError extends RamaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_FORMAT', message, options);
  }
}

/** An argument or option is out of range or inconsistent with the model. */
export class ArgumentError extends RamaError {
  constructor(message: string) {
    super('E_ARGUMENT', message);
  }
}

/** The backend cannot run: no device, lost device, out of device memory or limits. */
export class BackendError extends RamaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_BACKEND', message, options);
  }
}

/**
 * The model computed NaN or infinite values (logits), as a checkpoint whose
 * weights hold NaN/Inf does: sampling from them would be meaningless.
 */
export class NumericError extends RamaError {
  constructor(message: string) {
    super('E_NUMERIC', message);
  }
}

/** Work was cancelled through an AbortSignal. */
export class AbortError extends RamaError {
  constructor(message = 'aborted') {
    super('E_ABORTED', message);
  }
}

const NAMES = new Map<abstract new (...args: never[]) => RamaError, string>([
  [RamaError, 'RamaError'], [FormatError, 'FormatError'], [ArgumentError, 'ArgumentError'],
  [BackendError, 'BackendError'], [NumericError, 'NumericError'], [AbortError, 'AbortError'],
]);
