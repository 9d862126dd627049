/*
 * Web Storage that may be unavailable (private mode, disabled cookies): a read that fails is
 * null, a write that fails is skipped.
 */

/** @param {'localStorage'|'sessionStorage'} kind */
export function storageGet(kind, key) {
  try { return globalThis[kind].getItem(key); } catch (e) { return null; }
}

/** Store `value` under `key`, or remove the key when `value` is null. */
export function storageSet(kind, key, value) {
  try {
    if (value === null) globalThis[kind].removeItem(key);
    else globalThis[kind].setItem(key, value);
  } catch (e) { /* ignore */ }
}

export const NICK_KEY = 'portshare.nick';
export const ROOMS_KEY = 'portshare.rooms';
export const TOKEN_KEY = 'portshare.apiToken';
