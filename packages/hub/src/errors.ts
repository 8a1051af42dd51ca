/**
 * HubError: every way fetching a model by name can fail, each with its own
 * `code`, so a caller can tell "set HF_TOKEN" from "check the name" from
 * "try again". The message names the model and the URL.
 */
import { RamaError } from '@rama/core';

/** Why fetching a model failed: HubError's `code`. */
export type HubErrorCode =
  /** The Hub has no such repository (or it is private and no token was sent). */
  | 'E_REPO_NOT_FOUND'
  /** The repository exists but has no such file (or revision). */
  | 'E_FILE_NOT_FOUND'
  /** 401/403: a gated or private repository, and no token or a token without access. */
  | 'E_UNAUTHORIZED'
  /** Any other HTTP error status. */
  | 'E_HTTP'
  /** The server could not be reached, or the connection broke. */
  | 'E_NETWORK'
  /** The server sent nothing for too long. */
  | 'E_STALLED'
  /** What arrived does not have the published SHA-256. */
  | 'E_CHECKSUM'
  /** What arrived (or was announced) does not have the published size, or is empty. */
  | 'E_SIZE'
  /** What arrived is not a model file at all (an HTML page, or a caller's check failed). */
  | 'E_NOT_A_FILE'
  /** Offline mode, and the model is not in the cache. */
  | 'E_OFFLINE';

/** What a HubError says: the model, the URL and the reason. */
export interface HubErrorDetails {
  /** The model's name as given (hf:... or the URL) or the file's name. */
  model: string;
  /** The URL that failed, when there was one. */
  url?: string;
  /** What went wrong, in words, without the model and URL. */
  reason: string;
  /** The underlying error (a network error, an HTTP response's status), if any. */
  cause?: unknown;
}

/** Fetching a model by name failed; `code` says why (see HubErrorCode). */
export class HubError extends RamaError {
  declare readonly code: HubErrorCode;
  /** See HubErrorDetails.model. */
  readonly model: string;
  /** See HubErrorDetails.url. */
  readonly url: string | undefined;
  /** See HubErrorDetails.reason. */
  readonly reason: string;

  /** The message is "could not download <model> from <url>: <reason>" unless `message` is given. */
  constructor(code: HubErrorCode, details: HubErrorDetails, message?: string) {
    const from = details.url && details.url !== details.model ? ` from ${details.url}` : '';
    super(code, message ?? `could not download ${details.model}${from}: ${details.reason}`, { cause: details.cause });
    this.model = details.model;
    this.url = details.url;
    this.reason = details.reason;
  }
}
