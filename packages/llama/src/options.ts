/**
 * Checks the options of load, generate and chat before anything runs, so a
 * wrong value is an ArgumentError naming the option instead of a failure deep
 * inside (or, worse, a silently different behaviour). Sampling options are
 * checked by the Sampler itself.
 */
import { ArgumentError } from '@rama/core';

type Options = Record<string, unknown>;

/** Rejects options nobody reads: a misspelt `temprature` would otherwise be ignored. */
export function checkKnown(what: string, opts: unknown, known: readonly string[]): Options {
  if (opts === undefined) return {};
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) {
    throw new ArgumentError(`${what}: options must be an object, got ${describe(opts)}`);
  }
  for (const key of Object.keys(opts)) {
    if (!known.includes(key)) throw new ArgumentError(`${what}: unknown option "${key}" (known: ${known.join(', ')})`);
  }
  return opts as Options;
}

export function checkInteger(what: string, name: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in ${min}..${max}`;
    throw new ArgumentError(`${what}: ${name} must be an integer ${range}, got ${describe(value)}`);
  }
}

export function checkNumber(what: string, name: string, value: unknown, min: number): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min) {
    throw new ArgumentError(`${what}: ${name} must be a finite number >= ${min}, got ${describe(value)}`);
  }
}

export function checkBoolean(what: string, name: string, value: unknown): void {
  if (value !== undefined && typeof value !== 'boolean') throw new ArgumentError(`${what}: ${name} must be true or false, got ${describe(value)}`);
}

export function checkString(what: string, name: string, value: unknown, optional = true): void {
  if (value === undefined && optional) return;
  if (typeof value !== 'string') throw new ArgumentError(`${what}: ${name} must be a string, got ${describe(value)}`);
}

/** A non-empty string or an array of them (stop strings, as OpenAI's `stop` takes either). */
export function checkStringList(what: string, name: string, value: unknown): void {
  if (value === undefined || (typeof value === 'string' && value !== '')) return;
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string' || v === '')) {
    throw new ArgumentError(`${what}: ${name} must be a non-empty string or an array of them, got ${describeList(value)}`);
  }
}

export function checkSignal(what: string, value: unknown): void {
  if (value === undefined) return;
  const s = value as AbortSignal | null;
  if (s === null || typeof s !== 'object' || typeof s.aborted !== 'boolean' || typeof s.addEventListener !== 'function') {
    throw new ArgumentError(`${what}: signal must be an AbortSignal, got ${describe(value)}`);
  }
}

export function checkObject(what: string, name: string, value: unknown): void {
  if (value !== undefined && (value === null || typeof value !== 'object')) {
    throw new ArgumentError(`${what}: ${name} must be an object, got ${describe(value)}`);
  }
}

/** `describe`, or for an array its first bad element. */
function describeList(value: unknown): string {
  if (!Array.isArray(value)) return describe(value);
  const i = value.findIndex((v) => typeof v !== 'string' || v === '');
  return `an array whose element ${i} is ${describe(value[i])}`;
}

/** A short, safe rendering of a bad value for a message. */
export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value);
  if (typeof value === 'bigint') return `${value}n`;
  if (value === null || typeof value !== 'object') return String(value);
  return Array.isArray(value) ? 'an array' : 'an object';
}
