// Validates custom resources against their published schemas (the compiled validators of
// the kubernetes-models packages in package.json). Reads a JSON array of objects on stdin,
// prints a JSON array of {kind, name, schema, error}: schema is the module used (null when
// no package here has one for the object's apiVersion and kind), error null when valid.
import { readFileSync } from "node:fs";

const PACKAGES = { "keda.sh": "@kubernetes-models/keda", "traefik.io": "@kubernetes-models/traefik" };

async function check(resource) {
  const [group, version] = resource.apiVersion.split("/");
  const found = { kind: resource.kind, name: resource.metadata?.name ?? null, schema: null, error: null };
  if (!PACKAGES[group]) return found;
  const module = `${PACKAGES[group]}/${group}/${version}/${resource.kind}`;
  let model;
  try {
    model = (await import(module))[resource.kind];
  } catch {
    return found;
  }
  found.schema = module;
  try {
    new model(resource).validate();
  } catch (error) {
    found.error = String(error.message ?? error);
  }
  return found;
}

const resources = JSON.parse(readFileSync(0, "utf8"));
const results = [];
for (const resource of resources) results.push(await check(resource));
process.stdout.write(JSON.stringify(results));
