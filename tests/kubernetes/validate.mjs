// Validates deploy/kubernetes/*.yaml: every document against its kind's
// schema (kubernetes-models: the Kubernetes API's OpenAPI schemas; the
// Prometheus Operator's for PodMonitor), then the fields the deployment
// relies on, each a check that prints ok or FAIL. Exit status 1 on any FAIL.
//
// Usage: node validate.mjs DIR
import fs from "node:fs";
import path from "node:path";
import yaml from "js-yaml";
import * as apps from "kubernetes-models/apps/v1";
import * as core from "kubernetes-models/v1";
import * as monitoring from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";

const dir = process.argv[2];
let passed = 0;
let failed = 0;
function check(what, ok, detail = "") {
  if (ok) {
    passed++;
    console.log(`ok: ${what}`);
  } else {
    failed++;
    console.log(`FAIL: ${what}${detail ? "\n  " + detail : ""}`);
  }
}

const kinds = {
  "apps/v1 Deployment": apps.Deployment,
  "v1 Service": core.Service,
  "monitoring.coreos.com/v1 PodMonitor": monitoring.PodMonitor,
};
const docs = [];
for (const file of fs.readdirSync(dir).filter((f) => f.endsWith(".yaml")).sort()) {
  for (const doc of yaml.loadAll(fs.readFileSync(path.join(dir, file), "utf8"))) {
    if (doc == null) continue;
    const key = `${doc.apiVersion} ${doc.kind}`;
    const Model = kinds[key];
    if (!Model) {
      check(`${file}: ${key} is a kind this check knows`, false);
      continue;
    }
    let error = "";
    try {
      new Model(doc).validate();
    } catch (e) {
      error = e.message;
    }
    check(`${file}: ${key} ${doc.metadata?.name} is valid against its schema`, error === "", error);
    docs.push(doc);
  }
}

const find = (kind) => docs.find((d) => d.kind === kind);
const deployment = find("Deployment");
const service = find("Service");
const podMonitor = find("PodMonitor");
check("a Deployment, a Service and a PodMonitor", deployment && service && podMonitor);
if (deployment && service && podMonitor) {
  const pod = deployment.spec.template.spec;
  const exporter = pod.containers.find((c) => c.name === "shmetrics-exporter");
  const app = pod.containers.find((c) => c.name !== "shmetrics-exporter");
  check("the pod has the exporter beside the application's container", exporter && app);
  const volume = (pod.volumes || []).find((v) => v.emptyDir);
  check("an emptyDir in memory holds the segments", volume && volume.emptyDir.medium === "Memory");
  const mount = (c) => (c.volumeMounts || []).find((m) => m.name === volume?.name);
  check(
    "both containers mount it at the same path",
    mount(app) && mount(exporter) && mount(app).mountPath === mount(exporter).mountPath,
  );
  check("the exporter mounts it read-only", mount(exporter)?.readOnly === true);
  check("no shared pid namespace (the exporter's liveness must work without it)", !pod.shareProcessNamespace);
  check("no host IPC namespace (containers of a pod share theirs)", !pod.hostIPC);

  const arg = (name) => {
    const a = (exporter.args || []).find((x) => x.startsWith(`--${name}=`));
    return a ? a.slice(name.length + 3) : undefined;
  };
  const segmentDir = (app.env || []).find((e) => e.name === "SHMETRICS_SEGMENT_DIR")?.value;
  check(
    `the writers' SHMETRICS_SEGMENT_DIR (${segmentDir}) is under the shared mount`,
    segmentDir && segmentDir.startsWith(mount(app).mountPath + "/"),
  );
  check(`the exporter reads the writers' directory (--segment-dir=${arg("segment-dir")})`, arg("segment-dir") === segmentDir);
  const uid = (c) => c.securityContext?.runAsUser ?? pod.securityContext?.runAsUser;
  const gid = (c) => c.securityContext?.runAsGroup ?? pod.securityContext?.runAsGroup;
  check(`--segment-owner is the writers' uid (${uid(app)})`, arg("segment-owner") === String(uid(app)));
  check(
    "the exporter runs as another user in the writers' group",
    uid(exporter) !== uid(app) && gid(exporter) !== undefined && gid(exporter) === gid(app),
  );
  for (const c of pod.containers) {
    const s = c.securityContext || {};
    check(
      `${c.name}: no privilege escalation, a read-only root, no capabilities`,
      s.allowPrivilegeEscalation === false && s.readOnlyRootFilesystem === true &&
        JSON.stringify(s.capabilities?.drop) === '["ALL"]',
    );
  }

  // Ports: each role's listener on the pod's addresses, named, and the names
  // the Service and the PodMonitor use.
  const ports = Object.fromEntries((exporter.ports || []).map((p) => [p.name, p.containerPort]));
  for (const [role, flag] of [["ops", "ops-listen"], ["judge", "judge-listen"]]) {
    const listen = arg(flag) || "";
    check(`--${flag}=${listen} listens on every address of the pod`, listen.startsWith("0.0.0.0:"));
    check(`the ${role} port is named ${role}-metrics`, String(ports[`${role}-metrics`]) === listen.split(":")[1]);
  }
  for (const p of service.spec.ports) check(`Service port ${p.name} targets a port of the exporter`, p.targetPort in ports);
  for (const e of podMonitor.spec.podMetricsEndpoints)
    check(`PodMonitor endpoint ${e.port} is a port of the exporter, path /metrics`, e.port in ports && e.path === "/metrics");
  const labels = deployment.spec.template.metadata.labels;
  const selects = (sel) => Object.entries(sel).every(([k, v]) => labels[k] === v);
  check("the Service selects the pods", selects(service.spec.selector));
  check("the PodMonitor selects the pods", selects(podMonitor.spec.selector.matchLabels));
  const annotations = deployment.spec.template.metadata.annotations || {};
  check(
    "the scrape annotations name the ops port and /metrics",
    annotations["prometheus.io/scrape"] === "true" && annotations["prometheus.io/port"] === String(ports["ops-metrics"]) &&
      annotations["prometheus.io/path"] === "/metrics",
  );
  const probe = exporter.livenessProbe?.httpGet;
  check("the exporter's liveness probe asks / (200 whatever the segments), not /healthz", probe && probe.path === "/");
  check("no readiness probe on /healthz (it would take the pod out of its Service)", !exporter.readinessProbe);
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
