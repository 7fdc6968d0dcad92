// Validates custom resources against their projects' API schemas (kubernetes-models' compiled validators).
// stdin: a JSON list of objects. stdout: a JSON list, one entry per object, in order:
//   {"validated": true, "errors": [{"path": "/spec/minReplicaCount", "message": "must be integer"}, ...]}
//   {"validated": false}   no schema for that apiVersion and kind here
import { readFileSync } from "node:fs";

const MODELS = {
  "keda.sh/v1alpha1/ScaledObject": "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject",
  "keda.sh/v1alpha1/TriggerAuthentication": "@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication",
  "postgresql.cnpg.io/v1/Cluster": "@kubernetes-models/cloudnative-pg/postgresql.cnpg.io/v1/Cluster",
  "monitoring.coreos.com/v1/ServiceMonitor":
    "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor",
  "monitoring.coreos.com/v1/PrometheusRule":
    "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule",
};

const objects = JSON.parse(readFileSync(0, "utf8"));
const results = [];
for (const object of objects) {
  const module = MODELS[`${object.apiVersion}/${object.kind}`];
  if (!module) {
    results.push({ validated: false });
    continue;
  }
  const exported = await import(module);
  const Model = exported[object.kind];
  try {
    new Model(object).validate();
    results.push({ validated: true, errors: [] });
  } catch (e) {
    const details = e.errors ?? e.details ?? [];
    const errors = details.length
      ? details.map((d) => ({ path: d.instancePath ?? "", message: d.message ?? String(d) }))
      : [{ path: "", message: e.message }];
    results.push({ validated: true, errors });
  }
}
process.stdout.write(JSON.stringify(results));
