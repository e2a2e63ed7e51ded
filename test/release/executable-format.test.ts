// The header check `bun run release` applies to each binary it builds (scripts/executable-format.ts),
// on headers made here: only the host's binaries can be run, so this is what vouches for the rest.
import { expect, test } from "bun:test";
import { targetNamed } from "../../scripts/build-config.ts";
import { executableFormat, formatMismatch } from "../../scripts/executable-format.ts";

/** A 64-bit little-endian ELF header with one PT_INTERP program header naming `interpreter`. */
function elf(machine: number, interpreter: string): Uint8Array {
  const bytes = new Uint8Array(512);
  const view = new DataView(bytes.buffer);
  bytes.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
  view.setUint16(18, machine, true);
  view.setBigUint64(32, 64n, true); // program headers right after the ELF header
  view.setUint16(54, 56, true);
  view.setUint16(56, 1, true);
  view.setUint32(64, 3, true); // PT_INTERP
  view.setBigUint64(64 + 8, 256n, true);
  view.setBigUint64(64 + 32, BigInt(interpreter.length + 1), true);
  bytes.set(new TextEncoder().encode(interpreter), 256);
  return bytes;
}

/** A 64-bit Mach-O header with one load command: LC_CODE_SIGNATURE when `signed`, else LC_UUID. */
function macho(cpu: number, signed = true): Uint8Array {
  const bytes = new Uint8Array(128);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, 0xfeedfacf, true);
  view.setUint32(4, cpu, true);
  view.setUint32(16, 1, true);
  view.setUint32(32, signed ? 0x1d : 0x1b, true);
  view.setUint32(36, 16, true);
  return bytes;
}

function pe(machine: number): Uint8Array {
  const bytes = new Uint8Array(256);
  const view = new DataView(bytes.buffer);
  bytes.set([0x4d, 0x5a]);
  view.setUint32(0x3c, 0x80, true);
  view.setUint32(0x80, 0x50450000);
  view.setUint16(0x84, machine, true);
  return bytes;
}

test("each target's header is recognised as that target", () => {
  const headers = {
    "linux-x64": elf(0x3e, "/lib64/ld-linux-x86-64.so.2"),
    "linux-arm64": elf(0xb7, "/lib/ld-linux-aarch64.so.1"),
    "linux-x64-musl": elf(0x3e, "/lib/ld-musl-x86_64.so.1"),
    "darwin-x64": macho(0x01000007),
    "darwin-arm64": macho(0x0100000c),
    "windows-x64": pe(0x8664),
  };
  for (const [name, header] of Object.entries(headers))
    expect(formatMismatch(targetNamed(name), executableFormat(header)), name).toBeNull();
});

test("a binary for another CPU, C library or system, or an unsigned macOS one, is refused, saying what it is", () => {
  expect(formatMismatch(targetNamed("linux-arm64"), executableFormat(elf(0x3e, "/lib64/ld-linux-x86-64.so.2")))).toBe(
    'built for {"os":"linux","arch":"x64","libc":"glibc"}, not {"os":"linux","arch":"arm64","libc":"glibc"}',
  );
  expect(formatMismatch(targetNamed("linux-x64-musl"), executableFormat(elf(0x3e, "/lib64/ld-linux-x86-64.so.2")))).toContain(
    '"libc":"glibc"}, not',
  );
  expect(formatMismatch(targetNamed("darwin-arm64"), executableFormat(macho(0x01000007)))).toContain(
    '"arch":"x64","codeSigned":true}, not',
  );
  expect(formatMismatch(targetNamed("darwin-arm64"), executableFormat(macho(0x0100000c, false)))).toContain('"codeSigned":false}, not');
  expect(formatMismatch(targetNamed("windows-x64"), executableFormat(elf(0x3e, "/lib64/ld-linux-x86-64.so.2")))).toContain('"os":"linux"');
  expect(
    formatMismatch(targetNamed("linux-x64"), executableFormat(new TextEncoder().encode("#!/bin/sh\necho not a binary\n".padEnd(128)))),
  ).toBe("not an executable Bun builds (no ELF, Mach-O or PE header)");
});
