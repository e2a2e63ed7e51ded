/**
 * A real full disk for tests: a small tmpfs mounted on a temp dir (needs root, as on this project's
 * machines and CI; `available` is false elsewhere, and the tests that need it say they were skipped).
 * `fill()` takes every free byte with a filler file, `free(bytes)` gives that much back.
 */
import { spawnSync } from "node:child_process";
import { closeSync, ftruncateSync, mkdirSync, openSync, writeSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "./proxy.ts";

export interface TinyDisk {
  dir: string;
  /** Writes a filler file until the disk refuses more (ENOSPC). */
  fill(): void;
  /** Shrinks the filler by `bytes`: that much is free again. */
  free(bytes: number): void;
  unmount(): void;
}

export function mountTinyDisk(megabytes: number): TinyDisk | null {
  const dir = join(tempDir(), "disk");
  mkdirSync(dir);
  if (spawnSync("mount", ["-t", "tmpfs", "-o", `size=${megabytes}m`, "tmpfs", dir]).status !== 0) return null;
  let fd: number | null = null;
  let size = 0;
  return {
    dir,
    fill() {
      fd = openSync(join(dir, "filler"), "w");
      for (const piece of [new Uint8Array(1 << 20).fill(1), new Uint8Array(4096).fill(1), new Uint8Array(1).fill(1)]) {
        try {
          for (;;) size += writeSync(fd, piece);
        } catch {
          // ENOSPC: on to smaller pieces
        }
      }
    },
    free(bytes) {
      size = Math.max(0, size - bytes);
      ftruncateSync(fd!, size);
    },
    unmount() {
      if (fd !== null) closeSync(fd);
      // Lazy: mapped intent segments may still be open in this process.
      spawnSync("umount", ["-l", dir]);
    },
  };
}

/** Whether this machine can mount a tmpfs (root). */
export const canMountTinyDisk = (() => {
  const disk = mountTinyDisk(1);
  disk?.unmount();
  return disk !== null;
})();
