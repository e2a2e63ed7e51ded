/**
 * What a built binary is, read from its headers: ELF (Linux), Mach-O (macOS) or PE (Windows), for
 * which CPU, for a Linux binary which C library's loader it asks for, for a macOS binary whether it
 * is code-signed. `bun run release` checks
 * every binary it builds against its target, since only some of them can be run here.
 */
import type { Target } from "./build-config.ts";

export interface ExecutableFormat {
  os: Target["os"];
  arch: Target["arch"] | "other";
  /** Linux only: from the ELF interpreter (`/lib/ld-musl-…` is musl). */
  libc?: "glibc" | "musl";
  /** macOS only: whether it has a code signature (Bun signs ad hoc; Apple silicon runs nothing unsigned). */
  codeSigned?: boolean;
}

/** Reads the format from the first bytes of a file (64 KiB is plenty for every header read here). */
export function executableFormat(head: Uint8Array): ExecutableFormat | null {
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  if (head.length < 64) return null;
  if (view.getUint32(0) === 0x7f454c46) return elf(head, view);
  // 64-bit Mach-O, little-endian (both macOS targets).
  if (view.getUint32(0, true) === 0xfeedfacf) return macho(head, view);
  if (head[0] === 0x4d && head[1] === 0x5a) {
    const pe = view.getUint32(0x3c, true);
    if (pe + 6 > head.length || view.getUint32(pe) !== 0x50450000) return null;
    const machine = view.getUint16(pe + 4, true);
    return { os: "windows", arch: machine === 0x8664 ? "x64" : machine === 0xaa64 ? "arm64" : "other" };
  }
  return null;
}

function macho(head: Uint8Array, view: DataView): ExecutableFormat {
  const cpu = view.getUint32(4, true);
  const arch = cpu === 0x01000007 ? "x64" : cpu === 0x0100000c ? "arm64" : "other";
  let codeSigned = false;
  // The load commands follow the 32-byte header; LC_CODE_SIGNATURE is 0x1d.
  for (let i = 0, at = 32; i < view.getUint32(16, true) && at + 8 <= head.length; i++) {
    if (view.getUint32(at, true) === 0x1d) codeSigned = true;
    at += view.getUint32(at + 4, true) || head.length;
  }
  return { os: "darwin", arch, codeSigned };
}

function elf(head: Uint8Array, view: DataView): ExecutableFormat | null {
  // Only 64-bit little-endian ELF is built.
  if (head[4] !== 2 || head[5] !== 1) return null;
  const machine = view.getUint16(18, true);
  const arch = machine === 0x3e ? "x64" : machine === 0xb7 ? "arm64" : "other";
  const programHeaders = Number(view.getBigUint64(32, true));
  const entrySize = view.getUint16(54, true);
  const count = view.getUint16(56, true);
  for (let i = 0; i < count; i++) {
    const at = programHeaders + i * entrySize;
    if (at + 40 > head.length) break;
    if (view.getUint32(at, true) !== 3) continue; // PT_INTERP
    const offset = Number(view.getBigUint64(at + 8, true));
    const size = Number(view.getBigUint64(at + 32, true));
    const interpreter = new TextDecoder().decode(head.subarray(offset, offset + size));
    return { os: "linux", arch, libc: interpreter.includes("ld-musl-") ? "musl" : "glibc" };
  }
  return { os: "linux", arch };
}

/** Null when the format is the target's, else what is wrong, for the release to stop on. */
export function formatMismatch(target: Target, found: ExecutableFormat | null): string | null {
  if (!found) return `not an executable Bun builds (no ELF, Mach-O or PE header)`;
  const expected = {
    os: target.os,
    arch: target.arch,
    ...(target.libc ? { libc: target.libc } : {}),
    ...(target.os === "darwin" ? { codeSigned: true } : {}),
  };
  const actual = {
    os: found.os,
    arch: found.arch,
    ...(found.libc ? { libc: found.libc } : {}),
    ...(found.codeSigned !== undefined ? { codeSigned: found.codeSigned } : {}),
  };
  return JSON.stringify(expected) === JSON.stringify(actual)
    ? null
    : `built for ${JSON.stringify(actual)}, not ${JSON.stringify(expected)}`;
}
