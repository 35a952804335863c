// Validates ServiceMonitor resources (a prometheus-operator CRD, which the Kubernetes
// schemas of kubernetes-validate do not hold) against the CRD's schema, as compiled into
// the npm package @kubernetes-models/prometheus-operator (generated from the operator's
// CustomResourceDefinitions). Reads a JSON array of documents on stdin (the YAML,
// converted by the caller); exits 1 on any invalid one, or when none is a ServiceMonitor.
// Usage: node servicemonitor.mjs NODE_MODULES_DIR < docs.json
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modules = process.argv[2];
if (!modules) {
  console.error("usage: servicemonitor.mjs NODE_MODULES_DIR < docs.json");
  process.exit(2);
}
const { ServiceMonitor } = await import(pathToFileURL(join(modules,
  "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor.js")).href);

let input = "";
for await (const chunk of process.stdin) input += chunk;
const docs = JSON.parse(input);
let checked = 0;
let failed = 0;
for (const doc of docs) {
  if (doc?.kind !== "ServiceMonitor") continue;
  checked++;
  const name = doc?.metadata?.name ?? "(no name)";
  try {
    new ServiceMonitor(doc).validate();
    console.log(`servicemonitor/${name}: valid against monitoring.coreos.com/v1 ServiceMonitor`);
  } catch (err) {
    failed++;
    console.error(`servicemonitor/${name}: ${err.message}`);
  }
}
if (checked === 0) {
  console.error("no ServiceMonitor found");
  process.exit(1);
}
process.exit(failed ? 1 : 0);
