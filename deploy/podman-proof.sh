#!/usr/bin/env bash
# Proof that the images run as the manifests configure them, without a cluster: the local overlay's LSVCR Deployments
# as podman containers (runc, host network) with exactly the environment the rendered overlay gives each pod (ConfigMap
# lsvcr-config + env + Secret values), read-only root, user 1654, fresh scratch volumes. RabbitMQ and Azurite run as
# local programs (their images cannot be pulled offline) on free ports; the connection strings' in-cluster host:port
# (rabbitmq:5672, azurite:10000/10002) are rewritten to them, and each container gets its own HTTP port (host network).
# Then a tiny run is started through the Runs API and followed to its end; once it is Published, Serving must have
# downloaded the bundle (ModelPublished over the bus), turn ready and answer with the run's model version.
#
# Usage: deploy/podman-proof.sh [--faults]     (after deploy/build-images.sh)
#   --faults   mid-run: SIGKILL a fine-tuning container while it trains (and start a fresh one, as a Deployment
#              would), restart the broker during fine-tuning; the run must still complete. Artifacts are counted.
# Needs: podman, runc, rabbitmq-server, azurite (npm), python3-yaml, kubectl. KEEP=1 keeps the work folder.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
faults=false; [ "${1:-}" = --faults ] && faults=true
images=${LSVCR_IMAGES_DIR:-$root/deploy/.images}
work=$(mktemp -d /tmp/lsvcr-proof.XXXXXX)
chmod 755 "$work"
started=$(date +%s)
log() { printf '[%4ss] %s\n' "$(( $(date +%s) - started ))" "$*"; }
for tool in podman runc rabbitmq-server azurite kubectl python3 curl; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || { echo "podman-proof: '$tool' is missing" >&2; exit 1; }
done

# podman as SYSTEM.md says works here: runc, no default ulimits, cgroupfs; a private store under the work folder.
cat > "$work/containers.conf" <<'EOF'
[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
export CONTAINERS_CONF=$work/containers.conf
P=(podman --root "$work/storage" --runroot "$work/run")
rabbit_pid=; azurite_pid=; containers=()
cleanup() {
  for c in "${containers[@]}"; do "${P[@]}" rm -f -t 2 "$c" >/dev/null 2>&1 || true; done
  [ -n "$rabbit_pid" ] && kill "$rabbit_pid" 2>/dev/null || true
  [ -n "$azurite_pid" ] && kill "$azurite_pid" 2>/dev/null || true
  sleep 1
  stop_rabbit 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "work folder kept: $work"; else
    "${P[@]}" system reset -f >/dev/null 2>&1 || true
    grep -o " $work/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount 2>/dev/null || true
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

services=(runs embeddings alignment fine-tuning evaluation serving)
log "loading images from $images"
for s in "${services[@]}"; do
  [ -f "$images/$s.tar" ] || { echo "podman-proof: $images/$s.tar is missing (run deploy/build-images.sh)" >&2; exit 1; }
  "${P[@]}" load -q -i "$images/$s.tar" >/dev/null
done
"${P[@]}" images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | sed 's/^/    /'

amqp=$(free_port); dist=$(free_port); blob=$(free_port); queue=$(free_port); table=$(free_port)
log "RabbitMQ on 127.0.0.1:$amqp, Azurite blob $blob / table $table"
# The broker as the overlay configures it: credentials from rabbitmq-credentials, settings from rabbitmq-config.
kubectl kustomize deploy/overlays/local > "$work/local.yaml"
python3 - "$work/local.yaml" "$work" <<'EOF'
import base64, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
secret = lambda prefix: next(d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"].startswith(prefix))
creds = {k: base64.b64decode(v).decode() for k, v in secret("rabbitmq-credentials")["data"].items()}
conf = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "rabbitmq-config")["data"]["rabbitmq.conf"]
open(sys.argv[2] + "/rabbitmq-overlay.conf", "w").write(conf + f"default_user = {creds['username']}\ndefault_pass = {creds['password']}\n")
EOF
mkdir -p "$work/rabbitmq/mnesia" "$work/rabbitmq/log" "$work/azurite"
{ echo "listeners.tcp.default = 127.0.0.1:$amqp"; cat "$work/rabbitmq-overlay.conf"; } > "$work/rabbitmq/rabbitmq.conf"
echo '[].' > "$work/rabbitmq/enabled_plugins"
chown -R rabbitmq:rabbitmq "$work/rabbitmq"
start_rabbit() {
  RABBITMQ_NODENAME="lsvcr-proof-$amqp@localhost" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$amqp \
  RABBITMQ_DIST_PORT=$dist RABBITMQ_MNESIA_BASE=$work/rabbitmq/mnesia RABBITMQ_LOG_BASE=$work/rabbitmq/log RABBITMQ_LOGS=- \
  RABBITMQ_CONFIG_FILE=$work/rabbitmq/rabbitmq RABBITMQ_ENABLED_PLUGINS_FILE=$work/rabbitmq/enabled_plugins \
    setsid /usr/sbin/rabbitmq-server >> "$work/rabbitmq.log" 2>&1 &
  rabbit_pid=$!
  for _ in $(seq 120); do (exec 3<>/dev/tcp/127.0.0.1/$amqp) 2>/dev/null && return 0; sleep 0.5; done
  echo "podman-proof: RabbitMQ did not start (see $work/rabbitmq.log)" >&2; exit 1
}
# rabbitmq-server drops to the rabbitmq user through su (a new session): find this node's processes by their data dir.
rabbit_pids() { for p in $(pgrep -f 'rabbitmq|beam.smp|erl_child_setup' || true); do
  if { tr '\0' '\n' < "/proc/$p/environ"; } 2>/dev/null | grep -qx "RABBITMQ_MNESIA_BASE=$work/rabbitmq/mnesia"; then echo "$p"; fi; done; }
stop_rabbit() { # SIGTERM, as a pod deletion does; the node shuts down cleanly and keeps its durable queues
  [ -n "$rabbit_pid" ] || return 0
  local pids; pids=$(rabbit_pids)
  if [ -n "$pids" ]; then kill $pids 2>/dev/null || true; fi
  for _ in $(seq 60); do [ -z "$(rabbit_pids)" ] && break; sleep 0.5; done
  pids=$(rabbit_pids)
  if [ -n "$pids" ]; then kill -9 $pids 2>/dev/null || true; fi
  rabbit_pid=
}
start_rabbit
azurite --blobHost 127.0.0.1 --blobPort "$blob" --queueHost 127.0.0.1 --queuePort "$queue" --tableHost 127.0.0.1 \
  --tablePort "$table" --location "$work/azurite" --skipApiVersionCheck --loose > "$work/azurite.log" 2>&1 &
azurite_pid=$!
for _ in $(seq 60); do (exec 3<>/dev/tcp/127.0.0.1/$table) 2>/dev/null && break; sleep 0.5; done

# One env file per Deployment, from the rendered overlay.
python3 - "$work/local.yaml" "$work" "$amqp" "$blob" "$table" <<'EOF'
import base64, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
work, amqp, blob, table = sys.argv[2:]
byname = {(d["kind"], d["metadata"]["name"]): d for d in docs}
def rewrite(v):
    return (v.replace("@rabbitmq:5672", f"@127.0.0.1:{amqp}")
             .replace("http://azurite:10000", f"http://127.0.0.1:{blob}").replace("http://azurite:10002", f"http://127.0.0.1:{table}"))
for d in docs:
    if d["kind"] != "Deployment" or d["metadata"]["name"] in ("rabbitmq", "azurite"): continue
    c = d["spec"]["template"]["spec"]["containers"][0]
    env = {}
    for ef in c.get("envFrom", []):
        env.update(byname[("ConfigMap", ef["configMapRef"]["name"])]["data"])
    for e in c.get("env", []):
        if "value" in e: env[e["name"]] = e["value"]
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = base64.b64decode(byname[("Secret", ref["name"])]["data"][ref["key"]]).decode()
    name = d["metadata"]["name"]
    with open(f"{work}/{name}.env", "w") as f:
        for k, v in env.items(): f.write(f"{k}={rewrite(v)}\n")
    with open(f"{work}/{name}.meta", "w") as f:
        f.write(f"{c['image']} {d['spec'].get('replicas', 1)} {d['spec']['template']['spec'].get('terminationGracePeriodSeconds', 30)}\n")
EOF

declare -A port
run_container() { # name deployment [suffix]
  local name=$1 dep=$2 image replicas grace
  read -r image replicas grace < "$work/$dep.meta"
  [[ $image == */*/* ]] || image=docker.io/$image # the name build-images.sh's archives carry (docker.io/lsvcr/...)
  port[$name]=$(free_port)
  local scratch="$work/vol/$name-$(date +%s%N)" # a new emptyDir per pod
  mkdir -p "$scratch"; chown 1654:1654 "$scratch"
  local extra=()
  if [ "$dep" = serving ]; then # the base's bundles emptyDir: Serving downloads published bundles into it
    mkdir -p "$scratch-bundles"; chown 1654:1654 "$scratch-bundles"; extra=(-v "$scratch-bundles:/bundles")
  fi
  "${P[@]}" run -d --name "$name" --network=host --read-only --tmpfs /tmp:rw,mode=1777,size=64m \
    -v "$scratch:/var/lsvcr" --env-file "$work/$dep.env" -e ASPNETCORE_HTTP_PORTS="${port[$name]}" \
    --stop-timeout "$grace" "${extra[@]}" "$image" >/dev/null
  [[ " ${containers[*]} " == *" $name "* ]] || containers+=("$name")
}
wait_url() { # url seconds expected-code
  for _ in $(seq $(( $2 * 2 ))); do [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = "${3:-200}" ] && return 0; sleep 0.5; done
  return 1
}
peak_rss() { # container -> VmHWM of its main process in MB
  local pid; pid=$("${P[@]}" inspect --format '{{.State.Pid}}' "$1" 2>/dev/null) || { echo -; return; }
  awk '/VmHWM/ {printf "%d", $2/1024}' "/proc/$pid/status" 2>/dev/null || echo -
}

log "starting containers"
run_container lsvcr-runs runs
run_container lsvcr-embeddings embeddings
run_container lsvcr-alignment alignment
run_container lsvcr-fine-tuning-1 fine-tuning
run_container lsvcr-fine-tuning-2 fine-tuning
run_container lsvcr-evaluation evaluation
run_container lsvcr-serving serving
for c in lsvcr-runs lsvcr-embeddings lsvcr-alignment lsvcr-fine-tuning-1 lsvcr-fine-tuning-2 lsvcr-evaluation; do
  wait_url "http://127.0.0.1:${port[$c]}/health" 120 || { echo "podman-proof: $c not ready"; "${P[@]}" logs --tail 30 "$c"; exit 1; }
  log "$c ready (/health 200) on port ${port[$c]}, user $("${P[@]}" inspect --format '{{.Config.User}}' "$c")"
done
wait_url "http://127.0.0.1:${port[lsvcr-serving]}/alive" 60 || { "${P[@]}" logs --tail 30 lsvcr-serving; exit 1; }
log "lsvcr-serving alive (/alive 200); /health $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${port[lsvcr-serving]}/health") until a published bundle is loaded"

runs=http://127.0.0.1:${port[lsvcr-runs]}
request=${LSVCR_PROOF_REQUEST:-'{"synthetic":{"users":40,"videos":64,"seed":7},"options":{"fineTune":{"epochs":1},"gate":{"enabled":false}}}'}
$faults && request=${LSVCR_PROOF_REQUEST:-'{"synthetic":{"users":400,"videos":400,"seed":7},"options":{"fineTune":{"epochs":6},"gate":{"enabled":false}}}'}
log "POST $runs/v1/runs $request"
run_id=$(curl -sf -X POST "$runs/v1/runs" -H 'Content-Type: application/json' -d "$request" | python3 -c 'import json,sys; print(json.load(sys.stdin)["runId"])')
log "run $run_id"
killed=false; restarted=false; last=
cat > "$work/state.py" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(r["state"], " ".join(s["name"] + ":" + s["status"] for s in r["steps"]))
EOF
state() { curl -sf "$runs/v1/runs/$run_id" > "$work/run.json" && python3 "$work/state.py" "$work/run.json"; }
deadline=$(( $(date +%s) + ${LSVCR_PROOF_TIMEOUT:-900} ))
while :; do
  now=$(state || echo "not visible yet")
  [ "$now" != "$last" ] && log "$now" && last=$now
  case $now in Published*|Failed*) break ;; esac
  [ "$(date +%s)" -gt "$deadline" ] && { log "timed out"; break; }
  if $faults && ! $killed && [[ $now == FineTuning*Running* ]]; then
    sleep 5
    victim=lsvcr-fine-tuning-1 # each instance trains one task (Rec or CommRank) at a time
    log "FAULT: SIGKILL $victim mid-step; a fresh container replaces it (as the Deployment's ReplicaSet would)"
    "${P[@]}" kill -s KILL "$victim" >/dev/null; "${P[@]}" rm -f "$victim" >/dev/null
    run_container "$victim" fine-tuning
    killed=true
  fi
  if $faults && $killed && ! $restarted && [[ $now == FineTuning* ]]; then
    sleep 5
    log "FAULT: restarting the broker"
    stop_rabbit; start_rabbit; restarted=true
    log "broker back on $amqp"
  fi
  sleep 1
done
python3 - "$work/run.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"run {r['runId']}: {r['state']}  (submitted {r['submittedAt']}, updated {r['updatedAt']})")
for s in r["steps"]:
    print(f"  {s['name']:<24} {s['status']:<10} {s['seconds'] or 0:8.1f} s  {s.get('error') or ''}")
a = r["artifacts"]
sets = {k: v for k, v in a.items() if k != "models" and v} | {"model " + k: v for k, v in (a.get("models") or {}).items()}
for k, v in sets.items(): print(f"  {k:<18} {v['set']:<58} {v['files']:>3} files {v['size']:>9} B  sha256 {v['contentSha256'][:12]}")
print(f"  artifact sets: {len(sets)}, files in their manifests: {sum(v['files'] for v in sets.values())}")
if r.get("failureReason"): print("  failure:", r["failedStep"], r["failureReason"])
EOF
# Serving, while the store is still up (it downloads the bundle from there on ModelPublished).
serving=http://127.0.0.1:${port[lsvcr-serving]}
served=false
if [[ $last == Published* ]]; then
  version=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["modelVersion"] or "")' "$work/run.json")
  log "run's modelVersion: ${version:-<none>}; waiting for Serving's /health"
  if [ -n "$version" ] && wait_url "$serving/health" "${LSVCR_PROOF_SERVING_TIMEOUT:-180}"; then
    log "lsvcr-serving ready (/health 200); /v1/model: $(curl -s "$serving/v1/model" | head -c 300)"
    served=true
    # The synthetic dataset's ids are 1..N (videos and comments): one real history, and an empty one (popularity).
    for case in 'model|{"video_history":["1","2","3"],"comment_history":[{"video":"1","comments":["1"]}],"k":5}' 'popularity|{"video_history":[],"k":5}'; do
      fallback=${case%%|*}; body=${case#*|}
      code=$(curl -s -o "$work/answer.json" -D "$work/answer.headers" -w '%{http_code}' -X POST "$serving/v1/recommendations/videos" \
        -H 'Content-Type: application/json' -d "$body")
      header=$(tr -d '\r' < "$work/answer.headers" | awk -F': ' 'tolower($1) == "x-model-version" { print $2 }')
      log "POST /v1/recommendations/videos $body -> $code, X-Model-Version: $header"
      echo "    $(head -c 400 "$work/answer.json")"
      if [ "$code" != 200 ] || [ "$header" != "$version" ] ||
         ! python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); sys.exit(0 if len(r["items"]) == 5 and r["model_version"] == sys.argv[2] and r.get("fallback", "model") == sys.argv[3] else 1)' "$work/answer.json" "$version" "$fallback"; then
        log "serving check failed: expected 200, X-Model-Version $version, 5 items, fallback $fallback"; served=false
      fi
    done
  else
    log "lsvcr-serving not ready: /health $(curl -s -o /dev/null -w '%{http_code}' "$serving/health"); /v1/model: $(curl -s "$serving/v1/model" | head -c 300)"
  fi
fi
# Every blob in Azurite (its database file is complete once Azurite has stopped): one _files/<attempt>/ folder and one
# _manifest.json per set means no duplicated attempt and nothing half-written.
sleep 5; kill "$azurite_pid" 2>/dev/null || true; wait "$azurite_pid" 2>/dev/null || true; azurite_pid=
python3 - "$work/azurite" <<'EOF' || true
import json, os, sys
loki = os.path.join(sys.argv[1], "__azurite_db_blob__.json")
if os.path.exists(loki):
    db = json.load(open(loki))
    blobs = [b["name"] for c in db["collections"] if c["name"] == "$BLOBS_COLLECTION$" for b in c["data"]]
    manifests = [b for b in blobs if b.endswith("/_manifest.json")]
    attempts = {b.split("/_files/")[0] + "/" + b.split("/_files/")[1].split("/")[0] for b in blobs if "/_files/" in b}
    print(f"  blobs in Azurite: {len(blobs)}, manifests: {len(manifests)}, attempt folders: {len(attempts)}")
EOF
log "peak RSS (MB): $(for c in "${containers[@]}"; do printf '%s=%s ' "${c#lsvcr-}" "$(peak_rss "$c")"; done)"
if [[ $last == Published* ]] && $served; then log "PASS: the run completed in the containers and Serving answers with its model"; exit 0; fi
log "FAIL: run ended in '$last', Serving answered: $served"
for c in "${containers[@]}"; do echo "--- $c"; "${P[@]}" logs --tail 15 "$c" 2>&1; done; exit 1
