// Runs the fake upstream as its own process (for the binary smoke test and the kill -9 test);
// prints its URL on the first line of stdout and serves until killed.
import { startFakeUpstream } from "./fake-upstream.ts";

const fake = await startFakeUpstream();
console.log(fake.url);
