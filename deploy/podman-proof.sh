#!/usr/bin/env bash
# Proof that the images run as the manifests configure them, without a cluster: the local overlay's LSVCR Deployments
# as podman containers (runc, host network) with exactly the environment the rendered overlay gives each pod (ConfigMap
# lsvcr-config + env + Secret values), read-only root, user 1654, fresh scratch volumes. RabbitMQ and Azurite run as
# local programs (their images cannot be pulled offline) on free ports; the connection strings' in-cluster host:port
# (rabbitmq:5672, azurite:10000/10002) are rewritten to them, and each container gets its own HTTP port (host network).
# Then a tiny run is started through the Runs API and followed to its end; once it is Published, bundle-installer must
# have downloaded the bundle (ModelPublished over the bus) onto the shared serving-bundles folder, and Serving (reading
# it read-only) turn ready and answer with the run's model version.
#
# With --kube-play the rendered local overlay itself runs under `podman kube play` instead (RabbitMQ and Azurite as its
# pods, from build-images.sh --infra's images), each pod on a podman bridge network with its own address; what podman
# 4.3's kube play lacks is filled in as the comments in the script say (Secrets, Services, emptyDir names, fsGroup).
#
# Usage: deploy/podman-proof.sh [--faults] [--rollout] [--kube-play]     (after deploy/build-images.sh [--infra])
#   --faults   a run with "align": true and, mid-run: SIGTERM the alignment container while it aligns (as a pod
#              deletion does: the durable worker must hand its job back, another instance completes it), SIGKILL a
#              fine-tuning container while it trains (a fresh one replaces each, as a Deployment would), restart the
#              broker during fine-tuning; the run must still complete. Artifacts are counted.
#   --rollout  after the proof: a Serving rollout under constant load (tests/LSVCR.LoadTests, scenario 1, through a
#              readiness-gated TCP balancer standing in for the Service): a second Serving container starts, joins the
#              balancer once its readiness probe (/health) passes, then the old one leaves it and gets SIGTERM, as
#              maxUnavailable 0 does; it passes only if every request is answered 200 (the load runner's latency
#              thresholds are not judged: they are for an idle machine). LSVCR_ROLLOUT_RATE (50 requests/s),
#              LSVCR_ROLLOUT_SECONDS (90), LSVCR_ROLLOUT_VIDEOS (5000: the bench catalogue) change it.
#              Needs: dotnet build tests/LSVCR.LoadTests -c Release.
# Needs: podman, runc, rabbitmq-server, azurite (npm) (without --kube-play), python3-yaml, kubectl. KEEP=1 keeps the work
# folder.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
faults=false; kube=false; rollout=false
for arg in "$@"; do
  case $arg in
    --faults) faults=true ;;
    --rollout) rollout=true ;;
    --kube-play) kube=true ;;
    *) echo "usage: deploy/podman-proof.sh [--faults] [--rollout] [--kube-play]" >&2; exit 2 ;;
  esac
done
$kube && { $faults || $rollout; } && { echo "podman-proof: --faults and --rollout run with the containers, not with --kube-play" >&2; exit 2; }
loadtests=$root/tests/LSVCR.LoadTests/bin/Release/net10.0/LSVCR.LoadTests.dll
$rollout && [ ! -f "$loadtests" ] && { echo "podman-proof: --rollout needs $loadtests (dotnet build tests/LSVCR.LoadTests -c Release)" >&2; exit 1; }
images=${LSVCR_IMAGES_DIR:-$root/deploy/.images}
work=$(mktemp -d /tmp/lsvcr-proof.XXXXXX)
chmod 755 "$work"
started=$(date +%s)
log() { printf '[%4ss] %s\n' "$(( $(date +%s) - started ))" "$*"; }
tools=(podman runc kubectl python3 curl); $kube || tools+=(rabbitmq-server azurite)
for tool in "${tools[@]}"; do
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
# Everything podman keeps stays in the work folder: its network definitions, its temporary state and its locks (the
# default shm locks are one segment for every podman on the machine, so two runs at once took each other's locks).
sed -i "s|^\[engine\]|[engine]\ntmp_dir = \"$work/tmp\"\nlock_type = \"file\"|" "$work/containers.conf"
printf '[network]\nnetwork_config_dir = "%s/networks"\n' "$work" >> "$work/containers.conf"
export CONTAINERS_CONF=$work/containers.conf
net=lsvcr-proof-$$
P=(podman --root "$work/storage" --runroot "$work/run")
rabbit_pid=; azurite_pid=; containers=()
cleanup() {
  for c in "${containers[@]}"; do "${P[@]}" rm -f -t 2 "$c" >/dev/null 2>&1 || true; done
  if $kube; then "${P[@]}" pod rm -f -a -t 2 >/dev/null 2>&1 || true; "${P[@]}" network rm -f "$net" >/dev/null 2>&1 || true; fi
  [ -n "$rabbit_pid" ] && kill "$rabbit_pid" 2>/dev/null || true
  [ -n "$azurite_pid" ] && kill "$azurite_pid" 2>/dev/null || true
  sleep 1
  stop_rabbit 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "work folder kept: $work"; else
    "${P[@]}" system reset -f >/dev/null 2>&1 || true
    # Anything podman failed to remove: this store's conmon processes (their bundle path is in the work folder) and
    # the container processes they supervise.
    for pid in $(pgrep -f "conmon .*-b $work/" || true); do kill -9 $(pgrep -P "$pid") "$pid" 2>/dev/null || true; done
    grep -o " $work/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount 2>/dev/null || true
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

services=(runs embeddings alignment fine-tuning evaluation serving); $kube && services+=(rabbitmq azurite)
log "loading images from $images"
for s in "${services[@]}"; do
  [ -f "$images/$s.tar" ] || { echo "podman-proof: $images/$s.tar is missing (run deploy/build-images.sh$($kube && echo ' --infra'))" >&2; exit 1; }
  "${P[@]}" load -q -i "$images/$s.tar" >/dev/null
done
"${P[@]}" images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | sed 's/^/    /'

wait_url() { # url seconds expected-code
  for _ in $(seq $(( $2 * 2 ))); do [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = "${3:-200}" ] && return 0; sleep 0.5; done
  return 1
}
peak_rss() { # container -> VmHWM of its main process in MB
  local pid; pid=$("${P[@]}" inspect --format '{{.State.Pid}}' "$1" 2>/dev/null) || { echo -; return; }
  awk '/VmHWM/ {printf "%d", $2/1024}' "/proc/$pid/status" 2>/dev/null || echo -
}
declare -A port url ctr
kubectl kustomize deploy/overlays/local > "$work/local.yaml"
if $kube; then
  # podman kube play (podman 4.3) of the rendered overlay, with what it lacks filled in and nothing else changed:
  # - Secrets: secretKeyRef reads a podman secret holding the Secret's data as JSON ({"key": "<base64>"}), and a Secret
  #   in the YAML is stored in a form it then cannot read: created here from each Secret's data.
  # - Services are ignored and pods get their pod names in DNS (<deployment>-pod-0): every pod gets hostAliases for the
  #   Services of the broker and the store, pointing at their pods' addresses (played first).
  # - an emptyDir becomes a podman volume named after the pod's volume, shared by pods using the same name ("scratch"
  #   in every service): renamed to <deployment>-<volume> so each Deployment has its own.
  # - fsGroup is ignored: the serving-bundles PVC gets podman's volume.podman.io/uid/gid annotations instead.
  # - httpGet probes run as curl inside the container, which the images do not have (no shell either): dropped;
  #   podman ignores readiness and startup probes anyway, so this script polls /health from outside, as the kubelet does.
  # - every containerPort is published on the host as if it were a hostPort (all services' 8080 would collide, and
  #   RabbitMQ's 5672 with the machine's): dropped, the pods are reached at their own addresses as in a cluster.
  # - images: the short names are qualified (docker.io/lsvcr/..., the name the archives carry) so nothing is pulled.
  log "podman kube play of deploy/overlays/local (network $net)"
  mkdir -p "$work/networks" "$work/kube"
  "${P[@]}" network create "$net" >/dev/null
  python3 - "$work/local.yaml" "$work/kube" <<'EOF'
import json, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
out = sys.argv[2]
deployments = [d for d in docs if d["kind"] == "Deployment"]
infra = {"rabbitmq", "azurite"}
for d in docs:
    if d["kind"] == "Secret":
        json.dump(d["data"], open(f"{out}/secret-{d['metadata']['name']}.json", "w"))
fs_groups = {}
for d in deployments:
    name, pod = d["metadata"]["name"], d["spec"]["template"]["spec"]
    for v in pod.get("volumes", []):
        if "emptyDir" in v:
            for c in pod["containers"]:
                for m in c.get("volumeMounts", []):
                    if m["name"] == v["name"]: m["name"] = f"{name}-{v['name']}"
            v["name"] = f"{name}-{v['name']}"
        if "persistentVolumeClaim" in v and "fsGroup" in pod.get("securityContext", {}):
            fs_groups[v["persistentVolumeClaim"]["claimName"]] = pod["securityContext"]["fsGroup"]
    for c in pod["containers"]:
        if "/" in c["image"] and "." not in c["image"].split("/")[0]: c["image"] = "docker.io/" + c["image"]
        c.pop("ports", None)
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            if "httpGet" in c.get(probe, {}): del c[probe]
    if name not in infra:
        pod["hostAliases"] = [{"ip": f"@{s}@", "hostnames": [s]} for s in sorted(infra)]
pvcs = [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
for p in pvcs:
    if p["metadata"]["name"] in fs_groups:
        g = str(fs_groups[p["metadata"]["name"]])
        p["metadata"].setdefault("annotations", {}).update({"volume.podman.io/uid": g, "volume.podman.io/gid": g})
configmaps = [d for d in docs if d["kind"] == "ConfigMap"]
yaml.safe_dump_all(configmaps + [d for d in deployments if d["metadata"]["name"] in infra], open(f"{out}/infra.yaml", "w"))
yaml.safe_dump_all(configmaps + pvcs + [d for d in deployments if d["metadata"]["name"] not in infra], open(f"{out}/lsvcr.yaml", "w"))
EOF
  for f in "$work"/kube/secret-*.json; do n=${f##*/secret-}; "${P[@]}" secret create "${n%.json}" "$f" >/dev/null; done
  pod_ip() { "${P[@]}" inspect --format "{{(index .NetworkSettings.Networks \"$net\").IPAddress}}" "$("${P[@]}" pod inspect --format '{{.InfraContainerID}}' "$1")"; }
  "${P[@]}" kube play --network "$net" "$work/kube/infra.yaml" > "$work/kube/infra.out" 2>&1 || { cat "$work/kube/infra.out"; exit 1; }
  rabbit_ip=$(pod_ip rabbitmq-pod-0); azurite_ip=$(pod_ip azurite-pod-0)
  for _ in $(seq 120); do (exec 3<>/dev/tcp/$rabbit_ip/5672) 2>/dev/null && break; sleep 0.5; done
  for _ in $(seq 60); do (exec 3<>/dev/tcp/$azurite_ip/10002) 2>/dev/null && break; sleep 0.5; done
  log "rabbitmq-pod-0 at $rabbit_ip:5672, azurite-pod-0 at $azurite_ip:10000/10002 (their images: $(
    "${P[@]}" ps --format '{{.Image}}' --filter pod=rabbitmq-pod-0 --filter pod=azurite-pod-0 | grep -v infra | sort -u | tr '\n' ' '))"
  sed -i "s/@rabbitmq@/$rabbit_ip/; s/@azurite@/$azurite_ip/" "$work/kube/lsvcr.yaml"
  "${P[@]}" kube play --network "$net" "$work/kube/lsvcr.yaml" > "$work/kube/lsvcr.out" 2>&1 || { cat "$work/kube/lsvcr.out"; exit 1; }
  "${P[@]}" pod ps --format '{{.Name}} {{.Status}} {{.NumberOfContainers}}' | sed 's/^/    pod /'
  for dep in runs embeddings alignment evaluation serving bundle-installer; do
    url[lsvcr-$dep]=http://$(pod_ip "$dep-pod-0"):8080; ctr[lsvcr-$dep]=$dep-pod-0-$dep; containers+=("$dep-pod-0-$dep")
  done
  n=0; while "${P[@]}" pod exists "fine-tuning-pod-$n" 2>/dev/null; do # the Deployment's replicas: one pod each
    url[lsvcr-fine-tuning-$((n + 1))]=http://$(pod_ip "fine-tuning-pod-$n"):8080; ctr[lsvcr-fine-tuning-$((n + 1))]=fine-tuning-pod-$n-fine-tuning
    containers+=("fine-tuning-pod-$n-fine-tuning"); n=$((n + 1))
  done
  log "fine-tuning replicas: $n; serving-bundles volume: $(stat -c '%n, owner %u' "$("${P[@]}" volume inspect serving-bundles --format '{{.Mountpoint}}')")"
  azurite_data=$("${P[@]}" volume inspect azurite-data --format '{{.Mountpoint}}')
  stop_azurite() { "${P[@]}" pod stop -t 10 azurite-pod-0 >/dev/null; }
else
amqp=$(free_port); dist=$(free_port); blob=$(free_port); queue=$(free_port); table=$(free_port)
log "RabbitMQ on 127.0.0.1:$amqp, Azurite blob $blob / table $table"
# The broker as the overlay configures it: credentials from rabbitmq-credentials, settings from rabbitmq-config.
python3 - "$work/local.yaml" "$work" <<'EOF'
import base64, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
secret = lambda prefix: next(d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"].startswith(prefix))
creds = {k: base64.b64decode(v).decode() for k, v in secret("rabbitmq-credentials")["data"].items()}
conf = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "rabbitmq-config")["data"]["20-lsvcr.conf"]
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
    pod = d["spec"]["template"]["spec"]
    # PersistentVolumeClaims (serving-bundles): one host folder per claim, shared by every container that mounts it.
    claims = {v["name"]: v["persistentVolumeClaim"] for v in pod.get("volumes", []) if "persistentVolumeClaim" in v}
    mounts = [f"{claims[m['name']]['claimName']}:{m['mountPath']}:{'ro' if m.get('readOnly') or claims[m['name']].get('readOnly') else 'rw'}"
              for m in c.get("volumeMounts", []) if m["name"] in claims]
    with open(f"{work}/{name}.meta", "w") as f:
        f.write(f"{c['image']} {d['spec'].get('replicas', 1)} {pod.get('terminationGracePeriodSeconds', 30)} {','.join(mounts) or '-'}\n")
EOF

run_container() { # name deployment [suffix]
  local name=$1 dep=$2 image replicas grace claims
  read -r image replicas grace claims < "$work/$dep.meta"
  [[ $image == */*/* ]] || image=docker.io/$image # the name build-images.sh's archives carry (docker.io/lsvcr/...)
  port[$name]=$(free_port); url[$name]=http://127.0.0.1:${port[$name]}; ctr[$name]=$name
  local scratch="$work/vol/$name-$(date +%s%N)" # a new emptyDir per pod
  mkdir -p "$scratch"; chown 1654:1654 "$scratch"
  local extra=() claim
  for claim in ${claims//,/ }; do # claim:mountPath:ro|rw (the serving-bundles volume: installer rw, Serving ro)
    [ "$claim" = - ] && continue
    mkdir -p "$work/pvc/${claim%%:*}"; chown 1654:1654 "$work/pvc/${claim%%:*}"
    extra+=(-v "$work/pvc/${claim%%:*}:${claim#*:}")
  done
  "${P[@]}" run -d --name "$name" --network=host --read-only --tmpfs /tmp:rw,mode=1777,size=64m \
    -v "$scratch:/var/lsvcr" --env-file "$work/$dep.env" -e ASPNETCORE_HTTP_PORTS="${port[$name]}" \
    --stop-timeout "$grace" "${extra[@]}" "$image" >/dev/null
  [[ " ${containers[*]} " == *" $name "* ]] || containers+=("$name")
}

log "starting containers"
run_container lsvcr-runs runs
run_container lsvcr-embeddings embeddings
run_container lsvcr-alignment alignment
run_container lsvcr-fine-tuning-1 fine-tuning
run_container lsvcr-fine-tuning-2 fine-tuning
run_container lsvcr-evaluation evaluation
run_container lsvcr-serving serving
run_container lsvcr-bundle-installer bundle-installer
azurite_data=$work/azurite
stop_azurite() { kill "$azurite_pid" 2>/dev/null || true; wait "$azurite_pid" 2>/dev/null || true; azurite_pid=; }
fi
for c in lsvcr-runs lsvcr-embeddings lsvcr-alignment lsvcr-fine-tuning-1 lsvcr-fine-tuning-2 lsvcr-evaluation; do
  wait_url "${url[$c]}/health" 120 || { echo "podman-proof: $c not ready"; "${P[@]}" logs --tail 30 "${ctr[$c]}"; exit 1; }
  log "$c ready (/health 200) at ${url[$c]}, user $("${P[@]}" inspect --format '{{.Config.User}}' "${ctr[$c]}"), read-only root $("${P[@]}" inspect --format '{{.HostConfig.ReadonlyRootfs}}' "${ctr[$c]}")"
done
# The installer's readiness probe is /alive (it takes no traffic and has no model before the first publication).
wait_url "${url[lsvcr-bundle-installer]}/alive" 60 || { "${P[@]}" logs --tail 30 "${ctr[lsvcr-bundle-installer]}"; exit 1; }
log "lsvcr-bundle-installer alive (/alive 200) at ${url[lsvcr-bundle-installer]}"
wait_url "${url[lsvcr-serving]}/alive" 60 || { "${P[@]}" logs --tail 30 "${ctr[lsvcr-serving]}"; exit 1; }
log "lsvcr-serving alive (/alive 200); /health $(curl -s -o /dev/null -w '%{http_code}' "${url[lsvcr-serving]}/health") until a published bundle is loaded"

runs=${url[lsvcr-runs]}
request=${LSVCR_PROOF_REQUEST:-'{"synthetic":{"users":40,"videos":64,"seed":7},"options":{"fineTune":{"epochs":1},"gate":{"enabled":false}}}'}
$faults && request=${LSVCR_PROOF_REQUEST:-'{"synthetic":{"users":400,"videos":400,"seed":7},"options":{"align":true,"fineTune":{"epochs":4},"gate":{"enabled":false}}}'}
log "POST $runs/v1/runs $request"
run_id=$(curl -sf -X POST "$runs/v1/runs" -H 'Content-Type: application/json' -d "$request" | python3 -c 'import json,sys; print(json.load(sys.stdin)["runId"])')
log "run $run_id"
killed=false; restarted=false; sigtermed=false; last=
sigterm() { # container deployment: stop it as the kubelet does (SIGTERM, SIGKILL after the grace), then replace it
  local t0 grace; t0=$(date +%s); read -r _ _ grace _ < "$work/$2.meta"
  log "FAULT: SIGTERM $1 mid-step (grace $grace s; peak RSS so far $(peak_rss "$1") MB)"
  "${P[@]}" stop -t "$grace" "$1" >/dev/null
  log "$1 exited $(( $(date +%s) - t0 )) s after SIGTERM (exit code $("${P[@]}" inspect --format '{{.State.ExitCode}}' "$1")); its last job lines:"
  "${P[@]}" logs "$1" 2>&1 | grep -E 'claimed job|handed back|job .* completed' | tail -3 | sed 's/^/    /'
  "${P[@]}" rm -f "$1" >/dev/null
  run_container "$1" "$2"
  sigtermed=true
}
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
  if $faults && ! $sigtermed && [[ $now == Aligning*alignment:Running* ]]; then sleep 5; sigterm lsvcr-alignment alignment; fi
  if $faults && ! $killed && [[ $now == FineTuning*Running* ]]; then
    sleep 5
    $sigtermed || sigterm lsvcr-fine-tuning-2 fine-tuning # alignment finished between two polls
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
serving=${url[lsvcr-serving]}
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
rolled=true
if $rollout && [[ $last == Published* ]] && $served; then
  rolled=false
  log "ROLLOUT: a load-test bench bundle (tests/LSVCR.LoadTests prepare) onto the serving-bundles volume"
  dotnet "$loadtests" prepare --bench "$work/bench" --videos "${LSVCR_ROLLOUT_VIDEOS:-5000}" --comments-per-video 5 --users 2000 > "$work/bench.log" 2>&1
  cp -a "$work/bench/bundle-a" "$work/pvc/serving-bundles/.bench-a"; chown -R 1654:1654 "$work/pvc/serving-bundles/.bench-a"
  mv "$work/pvc/serving-bundles/.bench-a" "$work/pvc/serving-bundles/bench-a" # the installer's stage-and-move
  model_of() { curl -s "$1/v1/model" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("model_version") or "")' 2>/dev/null; }
  for _ in $(seq 60); do [ "$(model_of "$serving")" != "$version" ] && break; sleep 1; done
  log "lsvcr-serving now serves $(model_of "$serving") (the newest bundle on the volume)"
  # The Service: a TCP balancer (kube-proxy is one too) over the endpoints listed in a file; new connections only go to
  # the endpoints listed, an established connection stays with its pod until one side closes it.
  lb=$(free_port); echo "127.0.0.1:${port[lsvcr-serving]}" > "$work/endpoints"
  cat > "$work/balancer.py" <<'PY'
import asyncio, itertools, sys
port, endpoints = int(sys.argv[1]), sys.argv[2]
turn = itertools.count()
async def pipe(r, w):
    try:
        while data := await r.read(65536):
            w.write(data); await w.drain()
    except OSError: pass
    finally: w.close()
async def handle(cr, cw):
    eps = [l.strip() for l in open(endpoints) if l.strip()]
    host, p = eps[next(turn) % len(eps)].split(":")
    try: ur, uw = await asyncio.open_connection(host, int(p))
    except OSError: cw.close(); return
    await asyncio.gather(pipe(cr, uw), pipe(ur, cw))
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    async with server: await server.serve_forever()
asyncio.run(main())
PY
  python3 "$work/balancer.py" "$lb" "$work/endpoints" > "$work/balancer.log" 2>&1 &
  balancer_pid=$!
  duration=${LSVCR_ROLLOUT_SECONDS:-90}; rate=${LSVCR_ROLLOUT_RATE:-50}
  log "load: scenario 1 (videos top-k), $rate requests/s for $duration s through the balancer on 127.0.0.1:$lb"
  dotnet "$loadtests" run --bench "$work/bench" --scenarios 1 --rate "$rate" --duration "$duration" --url "http://127.0.0.1:$lb" \
    --report "$work/rollout-report" > "$work/load.log" 2>&1 &
  load_pid=$!
  sleep 20
  log "ROLLOUT: new Serving pod lsvcr-serving-v2 (maxSurge 1) starts"
  run_container lsvcr-serving-v2 serving
  period=$(python3 -c 'import sys,yaml; d=[x for x in yaml.safe_load_all(open(sys.argv[1])) if x and x["kind"]=="Deployment" and x["metadata"]["name"]=="serving"][0]; print(d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSeconds"])' "$work/local.yaml")
  t0=$(date +%s)
  until [ "$(curl -s -o /dev/null -m 3 -w '%{http_code}' "${url[lsvcr-serving-v2]}/health")" = 200 ]; do
    [ $(( $(date +%s) - t0 )) -gt 180 ] && { log "ROLLOUT: v2 not ready after 180 s"; break; }; sleep "$period"
  done
  log "ROLLOUT: lsvcr-serving-v2 ready after $(( $(date +%s) - t0 )) s (readiness probe every $period s), serving $(model_of "${url[lsvcr-serving-v2]}"); it joins the endpoints"
  printf '127.0.0.1:%s\n127.0.0.1:%s\n' "${port[lsvcr-serving]}" "${port[lsvcr-serving-v2]}" > "$work/endpoints"
  sleep 5
  log "ROLLOUT: old pod lsvcr-serving leaves the endpoints and gets SIGTERM (grace 30 s)"
  echo "127.0.0.1:${port[lsvcr-serving-v2]}" > "$work/endpoints"
  t0=$(date +%s); "${P[@]}" stop -t 30 lsvcr-serving >/dev/null
  log "ROLLOUT: lsvcr-serving exited $(( $(date +%s) - t0 )) s after SIGTERM"
  wait "$load_pid" || true # its latency thresholds (p99 < 10 ms) are for an idle machine; the rollout is judged on answers
  kill "$balancer_pid" 2>/dev/null || true
  grep -v '^\s*$' "$work/load.log" | tail -8 | sed 's/^/    /'
  # "codes 0:9 200:4491": status 0 = no HTTP answer (the connection failed), i.e. a dropped request.
  codes=$(grep -o 'codes [0-9: ]*' "$work/load.log" | tail -1 | cut -d' ' -f2-)
  dropped=0; other=0; answered=0
  for c in $codes; do case ${c%%:*} in 0) dropped=${c#*:} ;; 200) answered=${c#*:} ;; *) other=$((other + ${c#*:})) ;; esac; done
  log "ROLLOUT: $answered answered 200, $dropped dropped (no answer), $other other statuses"
  [ -n "$codes" ] && [ "$dropped" = 0 ] && [ "$other" = 0 ] && rolled=true
fi
# Every blob in Azurite (its database file is complete once Azurite has stopped): one _files/<attempt>/ folder and one
# _manifest.json per set means no duplicated attempt and nothing half-written.
sleep 5; stop_azurite
python3 - "$azurite_data" <<'EOF' || true
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
if [[ $last == Published* ]] && $served && $rolled; then log "PASS: the run completed in the containers and Serving answers with its model"; exit 0; fi
log "FAIL: run ended in '$last', Serving answered: $served"
for c in "${containers[@]}"; do echo "--- $c"; "${P[@]}" logs --tail 15 "$c" 2>&1; done; exit 1
