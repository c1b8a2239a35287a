// SHA-256, hex, and the RFC 9162 tree hashes. SHA-256 comes from @noble/hashes rather than
// crypto.subtle, which browsers withhold from pages served over plain http (a LAN address).

import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js';

export function sha256(bytes) {
  return nobleSha256(bytes);
}

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function toHex(bytes) {
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}

/** Hex digits (either case) of `length` bytes, or of any whole number of bytes; else null. */
export function fromHex(s, length) {
  if (typeof s !== 'string' || s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s)) return null;
  if (length !== undefined && s.length !== 2 * length) return null;
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

/** RFC 9162 section 2.1.1: SHA-256(0x00 || leaf). */
export function leafHash(leaf) {
  return sha256(concat(Uint8Array.of(0), leaf));
}

/** RFC 9162 section 2.1.1: SHA-256(0x01 || left || right). */
export function nodeHash(left, right) {
  return sha256(concat(Uint8Array.of(1), left, right));
}

/**
 * The root that `path` leads to from the leaf at `index` of a tree of `size` leaves
 * (RFC 9162 section 2.1.3.2), or a string saying why there is none. BigInt throughout: indexes
 * are u64.
 */
export function rootFromInclusion(index, size, leaf, path) {
  if (index >= size) return `leaf index ${index} is not below tree size ${size}`;
  let fn = index;
  let sn = size - 1n;
  let r = leaf;
  for (const p of path) {
    if (sn === 0n) return 'proof has the wrong length';
    if ((fn & 1n) === 1n || fn === sn) {
      r = nodeHash(p, r);
      while ((fn & 1n) === 0n && fn !== 0n) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      r = nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) return 'proof has the wrong length';
  return r;
}
