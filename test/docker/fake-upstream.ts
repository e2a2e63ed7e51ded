// The fake OpenAI/Anthropic upstream of test/helpers/fake-upstream.ts as a container of the compose
// test: it answers the replicas on :9000, and tells the test what it received on :9001
// (GET /requests: every request, in order).
import { startFakeUpstream } from "../helpers/fake-upstream.ts";

const fake = await startFakeUpstream({ hostname: "0.0.0.0", port: 9000 });
Bun.serve({
  hostname: "0.0.0.0",
  port: 9001,
  fetch: (request) =>
    new URL(request.url).pathname === "/requests" ? Response.json(fake.requests) : new Response("not found", { status: 404 }),
});
console.log(`fake upstream on ${fake.url}, its requests on :9001/requests`);
