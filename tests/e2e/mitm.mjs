// A relay in the middle, in the browser: Ada and Bob open the same room link on a hostile
// signaling server that gives each of them a connection to a relay peer (tests/src/mitm.rs).
// Both pages must notice (the hello fails as intercepted), show the warning in words, and leave
// the room (the Rust side checks that nothing but the hello passed the relay). Prints `RESULT {json}` for the Rust test to check.
//
// usage: node tests/e2e/mitm.mjs MITM_BASE_URL ROOM
import { Person, launch } from "./duet.mjs";

const [base, room] = process.argv.slice(2);
const result = {};

const browser = await launch();
try {
  const link = `${base}/r/${room}?automation`;
  const people = { ada: await Person.open(browser, "Ada", link), bob: await Person.open(browser, "Bob", link) };
  for (const [who, person] of Object.entries(people)) {
    const negotiated = await person.waitFor("a negotiated connection", (e) => e.event === "negotiated");
    result[`${who}_local`] = negotiated.local_fingerprint;
    result[`${who}_remote`] = negotiated.remote_fingerprint;
    const hello = await person.waitFor("the hello's end", (e) => e.event === "hello_failed" || e.event === "peer_hello");
    result[`${who}_hello`] = hello.event;
    result[`${who}_reason`] = hello.reason ?? null;
    const warning = await person.waitFor("the warning", (e) => e.event === "notice" && e.message.includes("someone may be in the middle"));
    result[`${who}_warning`] = warning.message;
  }
} finally {
  await browser.close();
}
console.log(`RESULT ${JSON.stringify(result)}`);
