import { Database } from "bun:sqlite";
import { test } from "bun:test";
import { trailWith } from "./helpers/records.ts";
test("x", async () => {
  for (let i = 0; i < 20; i++) {
    const logDb = await trailWith(10);
    const db = new Database(logDb);
    try { db.run("BEGIN IMMEDIATE"); db.run("ROLLBACK"); } catch (e) {
      console.log("locked at", i);
      for (let w = 0; w < 50; w++) { await Bun.sleep(10); try { db.run("BEGIN IMMEDIATE"); db.run("ROLLBACK"); console.log("free after", w*10); break; } catch {} }
    }
    db.close();
  }
}, 30000);
