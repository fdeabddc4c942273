// The store contract (`game-client/src/storage/contract.rs`) against the browser's store
// (IndexedDB): a test page (`?store_contract`) runs the same check the desktop's folder store
// passes in a unit test, and reports it as a `store_contract` event; nothing else starts. The
// check runs twice in one profile, as a person's browser would hold earlier runs' files.
// Prints `RESULT {json}`.
//
// usage: node tests/e2e/store-contract.mjs BASE_URL
import { Person, launch } from "./duet.mjs";

const [base] = process.argv.slice(2);
const browser = await launch();
const result = { runs: [] };
try {
  const context = await browser.newContext();
  for (let run = 0; run < 2; run++) {
    const person = await Person.inContext(context, `run ${run}`, `${base}/?store_contract`, {
      grant: false,
    });
    const report = await person.waitFor("the store contract", (e) => e.event === "store_contract", {
      timeout: 60_000,
    });
    result.runs.push({ checks: report.checks, failure: report.failure ?? null, errors: person.errors });
    await person.page.close();
  }
} finally {
  await browser.close();
}
console.log(`RESULT ${JSON.stringify(result)}`);
