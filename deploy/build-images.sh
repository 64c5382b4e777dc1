#!/usr/bin/env bash
# Builds one OCI image per LSVCR service with the .NET SDK's container support (dotnet publish /t:PublishContainer),
# without a Docker engine and, by default, without internet access:
#
#   1. a minimal Debian 12 root filesystem from Debian packages (apt-get download + dpkg-deb: libc, libstdc++, ICU,
#      OpenSSL, zlib, CA certificates, tzdata) plus this machine's ASP.NET Core runtime, made into an image with buildah;
#   2. that base image pushed to a throw-away registry (Debian's docker-registry) on 127.0.0.1 and a free port, because
#      the SDK always pulls its base image from a registry;
#   3. each service published as a container on top of it, running as the non-root user 1654 (APP_UID), written as a
#      tarball to deploy/.images/<name>.tar (or pushed to LSVCR_IMAGE_REGISTRY when set).
#
# With internet access, LSVCR_BASE_IMAGE=mcr.microsoft.com/dotnet/aspnet:10.0 (or --official) skips steps 1-2 and builds
# on Microsoft's image instead. See docs/deploy.md.
#
# With --infra (or naming them) it also builds the local overlay's broker and storage images, which cannot be pulled here
# either: lsvcr/rabbitmq (Debian's rabbitmq-server and Erlang) and lsvcr/azurite (this machine's Node.js and its npm
# install of azurite), each on a Debian 12 root filesystem made the same way as the base.
#
# Usage: deploy/build-images.sh [--official] [--infra] [image ...]
#   images: runs embeddings alignment fine-tuning evaluation serving (default: these six), rabbitmq azurite (--infra)
# Environment:
#   LSVCR_BASE_IMAGE      base image to build on (skips the local base); --official sets mcr.microsoft.com/dotnet/aspnet:10.0
#   LSVCR_IMAGE_REGISTRY  push the service images there (e.g. myregistry.azurecr.io) instead of writing tarballs
#   LSVCR_IMAGE_TAG       image tag (default: the solution's Version, 0.1.0)
#   LSVCR_IMAGES_DIR      output folder (default deploy/.images)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

# name | project
services=(
  "runs|services/LSVCR.Runs/LSVCR.Runs.csproj"
  "embeddings|services/LSVCR.EmbeddingsService/LSVCR.EmbeddingsService.csproj"
  "alignment|services/LSVCR.AlignmentService/LSVCR.AlignmentService.csproj"
  "fine-tuning|services/LSVCR.FineTuning/LSVCR.FineTuning.csproj"
  "evaluation|services/LSVCR.Evaluation/LSVCR.Evaluation.csproj"
  "serving|services/LSVCR.Serving.Api/LSVCR.Serving.Api.csproj"
)
app_uid=1654 # the uid Microsoft's images use for their non-root "app" user, so both bases behave alike

infra=(rabbitmq azurite)

base_image=${LSVCR_BASE_IMAGE:-}
selected=(); infra_selected=(); services_selected=true
for arg in "$@"; do
  case $arg in
    --official) base_image=mcr.microsoft.com/dotnet/aspnet:10.0 ;;
    --infra) infra_selected=("${infra[@]}") ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    -*) echo "unknown option $arg (see --help)" >&2; exit 2 ;;
    rabbitmq|azurite) infra_selected+=("$arg"); names_given=true ;;
    *) selected+=("$arg"); names_given=true ;;
  esac
done
# Named images only: the services named (none when only rabbitmq/azurite are named); no names: all six.
${names_given:-false} && [ ${#selected[@]} -eq 0 ] && services_selected=false
if [ ${#selected[@]} -gt 0 ]; then
  for s in "${selected[@]}"; do
    printf '%s\n' "${services[@]}" | grep -q "^$s|" || { echo "unknown image '$s' (known: runs embeddings alignment fine-tuning evaluation serving rabbitmq azurite)" >&2; exit 2; }
  done
fi

out=${LSVCR_IMAGES_DIR:-$root/deploy/.images}
mkdir -p "$out"
work=$(mktemp -d /tmp/lsvcr-images.XXXXXX)
registry_pid=
cleanup() {
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null || true
  [ -n "${ctr:-}" ] && buildah "${buildah_store[@]}" rm "$ctr" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
need() { command -v "$1" >/dev/null || { echo "build-images: '$1' is missing; install it with: apt-get install $2" >&2; exit 1; }; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
started=$(date +%s)

# debian_rootfs DIR PACKAGE...: Debian 12 packages (this machine's apt sources) unpacked into DIR, as a root filesystem
# without dpkg: no maintainer scripts run, so their work (the CA bundle, /etc/localtime) is done here.
debian_rootfs() {
  local dir=$1; shift
  local debs; debs=$(mktemp -d "$work/debs.XXXXXX")
  (cd "$debs" && apt-get download -qq libc6 libgcc-s1 libstdc++6 libssl3 zlib1g ca-certificates tzdata "$@" 2>/dev/null) ||
    { echo "build-images: apt-get download $* failed (run apt-get update first)" >&2; exit 1; }
  mkdir -p "$dir"
  for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$dir"; done
  rm -rf "$debs" "$dir"/usr/share/{doc,man,info,lintian,locale}
  mkdir -p "$dir/etc/ssl/certs" "$dir/tmp"
  cat "$dir"/usr/share/ca-certificates/mozilla/*.crt > "$dir/etc/ssl/certs/ca-certificates.crt"
  ln -sf /usr/share/zoneinfo/Etc/UTC "$dir/etc/localtime"
  chmod 1777 "$dir/tmp"
}

libstdcxx=()
buildah_store=(--root "$work/storage" --runroot "$work/run" --storage-driver vfs)
if [ -z "$base_image" ] && $services_selected; then
  need buildah buildah; need docker-registry docker-registry; need dpkg-deb dpkg; need python3 python3; need readelf binutils
  dotnet_root=$(dirname "$(readlink -f "$(command -v dotnet)")")
  aspnet_version=$(ls "$dotnet_root/shared/Microsoft.AspNetCore.App" | sort -V | tail -1)
  netcore_version=$(ls "$dotnet_root/shared/Microsoft.NETCore.App" | sort -V | tail -1)

  echo "== base root filesystem: Debian 12 packages + ASP.NET Core $aspnet_version (from $dotnet_root)"
  rootfs=$work/rootfs
  # What .NET needs on Linux (https://learn.microsoft.com/dotnet/core/install/linux-debian#dependencies): the common
  # set plus ICU; libtorch brings its own libgomp, ONNX Runtime needs only libc/libstdc++.
  debian_rootfs "$rootfs" libicu72
  mkdir -p "$rootfs/usr/share/dotnet/shared" "$rootfs/usr/bin" "$rootfs/home/app" "$rootfs/app"
  cp -a "$dotnet_root/dotnet" "$dotnet_root/LICENSE.txt" "$dotnet_root/ThirdPartyNotices.txt" "$rootfs/usr/share/dotnet/" 2>/dev/null ||
    cp -a "$dotnet_root/dotnet" "$rootfs/usr/share/dotnet/"
  mkdir -p "$rootfs/usr/share/dotnet/host/fxr" "$rootfs/usr/share/dotnet/shared/Microsoft.NETCore.App" "$rootfs/usr/share/dotnet/shared/Microsoft.AspNetCore.App"
  cp -a "$dotnet_root/host/fxr/$(ls "$dotnet_root/host/fxr" | sort -V | tail -1)" "$rootfs/usr/share/dotnet/host/fxr/"
  cp -a "$dotnet_root/shared/Microsoft.NETCore.App/$netcore_version" "$rootfs/usr/share/dotnet/shared/Microsoft.NETCore.App/"
  cp -a "$dotnet_root/shared/Microsoft.AspNetCore.App/$aspnet_version" "$rootfs/usr/share/dotnet/shared/Microsoft.AspNetCore.App/"
  ln -s /usr/share/dotnet/dotnet "$rootfs/usr/bin/dotnet"
  printf 'root:x:0:0:root:/root:/usr/sbin/nologin\napp:x:%s:%s:app:/home/app:/usr/sbin/nologin\n' $app_uid $app_uid > "$rootfs/etc/passwd"
  printf 'root:x:0:\napp:x:%s:\n' $app_uid > "$rootfs/etc/group"
  chown $app_uid:$app_uid "$rootfs/home/app"
  # The runtime fix for TorchSharp's native library is computed against the libstdc++ the image will run with.
  libstdcxx=("-p:LsvcrHostLibStdCxx=$rootfs/usr/lib/x86_64-linux-gnu/libstdc++.so.6")

  echo "== base image (buildah, from scratch) -> registry on 127.0.0.1"
  ctr=$(buildah "${buildah_store[@]}" from scratch)
  tar -C "$rootfs" -cf "$work/rootfs.tar" .
  buildah "${buildah_store[@]}" add "$ctr" "$work/rootfs.tar" / >/dev/null
  # The same environment as mcr.microsoft.com/dotnet/aspnet:10.0: port 8080, APP_UID, the container flag.
  buildah "${buildah_store[@]}" config --os linux --arch amd64 --user $app_uid --workingdir /app \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env APP_UID=$app_uid \
    --env ASPNETCORE_HTTP_PORTS=8080 --env DOTNET_RUNNING_IN_CONTAINER=true --env DOTNET_VERSION="$netcore_version" \
    --env ASPNET_VERSION="$aspnet_version" --label org.opencontainers.image.description="LSVCR base: Debian 12 + ASP.NET Core $aspnet_version" \
    "$ctr"
  buildah "${buildah_store[@]}" commit -q --rm "$ctr" lsvcr-base >/dev/null
  ctr=

  port=$(free_port)
  cat > "$work/registry.yml" <<EOF
version: 0.1
log: { level: warn }
storage: { filesystem: { rootdirectory: $work/registry } }
http: { addr: 127.0.0.1:$port }
EOF
  docker-registry serve "$work/registry.yml" > "$work/registry.log" 2>&1 &
  registry_pid=$!
  for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.2; done
  buildah "${buildah_store[@]}" push -q --tls-verify=false lsvcr-base "docker://127.0.0.1:$port/lsvcr/aspnet:$aspnet_version" >/dev/null
  base_image=127.0.0.1:$port/lsvcr/aspnet:$aspnet_version
  export DOTNET_CONTAINER_INSECURE_REGISTRIES=127.0.0.1:$port
  base_mb=$(du -sm "$rootfs" | cut -f1)
  echo "   base image $base_image: $base_mb MB uncompressed"
fi

tag=${LSVCR_IMAGE_TAG:-$(sed -n 's:.*<Version>\(.*\)</Version>.*:\1:p' Directory.Build.props | head -1)}
printf '%-12s %8s %8s %10s %8s\n' image app_MB base_MB archive_MB seconds > "$work/sizes"
$services_selected && echo "== service images on $base_image (tag $tag)"
for entry in "${services[@]}"; do
  name=${entry%%|*}; project=${entry#*|}
  $services_selected || continue
  if [ ${#selected[@]} -gt 0 ] && ! printf '%s\n' "${selected[@]}" | grep -qx "$name"; then continue; fi
  t0=$(date +%s)
  dest=()
  if [ -n "${LSVCR_IMAGE_REGISTRY:-}" ]; then dest=("-p:ContainerRegistry=$LSVCR_IMAGE_REGISTRY")
  else dest=("-p:ContainerArchiveOutputPath=$out/$name.tar"); rm -f "$out/$name.tar"; fi
  echo "-- $name ($project)"
  # linux-x64, framework-dependent: a RID-neutral publish would also carry ONNX Runtime's Android/iOS/Windows/macOS
  # natives (130 MB).
  dotnet publish "$project" -c Release -r linux-x64 --self-contained false -nologo -v:minimal /t:PublishContainer \
    -p:ContainerBaseImage="$base_image" -p:ContainerRepository="lsvcr/$name" -p:ContainerImageTag="$tag" \
    -p:ContainerUser=$app_uid -p:PublishDir="$work/publish/$name/" "${libstdcxx[@]}" "${dest[@]}" \
    | grep -v '^\s*$' | sed 's/^/   /'
  # The serving image must run without libtorch (SYSTEM.md): fail the build rather than ship one that carries it.
  if [ "$name" = serving ] && find "$work/publish/$name" -name 'libtorch*' -o -name 'TorchSharp*' | grep -q .; then
    echo "build-images: the serving image would contain libtorch/TorchSharp:" >&2
    find "$work/publish/$name" -name 'libtorch*' -o -name 'TorchSharp*' >&2; exit 1
  fi
  # Every GLIBCXX version TorchSharp's native library asks for must be in the base's libstdc++ (else it fails to load).
  native=$(find "$work/publish/$name" -name libLibTorchSharp.so | head -1)
  if [ -n "$native" ] && [ -n "${rootfs:-}" ]; then
    for v in $(readelf -V "$native" | grep -o 'GLIBCXX_3\.4\.[0-9]*' | sort -u); do
      grep -aq "$v" "$rootfs/usr/lib/x86_64-linux-gnu/libstdc++.so.6" ||
        { echo "build-images: $native needs $v, which the base's libstdc++ lacks (TorchSharp native fix not applied)" >&2; exit 1; }
    done
  fi
  size_app=$(du -sm "$work/publish/$name" | cut -f1)
  size_archive=-; [ -f "$out/$name.tar" ] && size_archive="$(( $(stat -c %s "$out/$name.tar") / 1048576 ))"
  printf '%-12s %8s %8s %10s %8s\n' "$name" "$size_app" "${base_mb:--}" "$size_archive" "$(( $(date +%s) - t0 ))" >> "$work/sizes"
done
# infra_image NAME ROOTFS USER ENTRYPOINT-JSON [buildah config args...]: ROOTFS as one layer, to the archive or registry.
infra_image() {
  local name=$1 dir=$2 user=$3 entrypoint=$4 t0; shift 4; t0=$(date +%s)
  ctr=$(buildah "${buildah_store[@]}" from scratch)
  tar -C "$dir" -cf "$work/$name.tar" .
  buildah "${buildah_store[@]}" add "$ctr" "$work/$name.tar" / >/dev/null
  rm -f "$work/$name.tar"
  buildah "${buildah_store[@]}" config --os linux --arch amd64 --user "$user" --entrypoint "$entrypoint" \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@" "$ctr"
  buildah "${buildah_store[@]}" commit -q --rm "$ctr" "lsvcr/$name:$tag" >/dev/null
  ctr=
  local size_archive=-
  if [ -n "${LSVCR_IMAGE_REGISTRY:-}" ]; then
    buildah "${buildah_store[@]}" push -q "lsvcr/$name:$tag" "docker://$LSVCR_IMAGE_REGISTRY/lsvcr/$name:$tag" >/dev/null
  else
    rm -f "$out/$name.tar" # named docker.io/lsvcr/<name> like the SDK's archives
    buildah "${buildah_store[@]}" push -q "lsvcr/$name:$tag" "oci-archive:$out/$name.tar:docker.io/lsvcr/$name:$tag" >/dev/null
    size_archive=$(( $(stat -c %s "$out/$name.tar") / 1048576 ))
  fi
  printf '%-12s %8s %8s %10s %8s\n' "$name" "$(du -sm "$dir" | cut -f1)" - "$size_archive" "$(( $(date +%s) - t0 ))" >> "$work/sizes"
}
for name in "${infra_selected[@]}"; do
  need buildah buildah; need dpkg-deb dpkg
  echo "-- $name (infrastructure for deploy/overlays/local)"
  dir=$work/$name-rootfs
  case $name in
    rabbitmq)
      # Debian's rabbitmq-server and the Erlang applications it needs, run as user rabbitmq (999, as in the official
      # image); it reads /etc/rabbitmq/conf.d/*.conf and RABBITMQ_DEFAULT_USER/PASS like the official image does.
      debian_rootfs "$dir" rabbitmq-server erlang-base erlang-asn1 erlang-crypto erlang-eldap erlang-ftp erlang-inets \
        erlang-mnesia erlang-os-mon erlang-parsetools erlang-public-key erlang-runtime-tools erlang-snmp erlang-ssl \
        erlang-syntax-tools erlang-tftp erlang-tools erlang-xmerl dash coreutils sed grep procps libsystemd0 libtinfo6 \
        libncursesw6 libacl1 libattr1 libselinux1 libpcre2-8-0 libgmp10 libcap2 libgcrypt20 libgpg-error0 liblz4-1 \
        liblzma5 libzstd1 libproc2-0
      printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nrabbitmq:x:999:999:RabbitMQ:/var/lib/rabbitmq:/usr/sbin/nologin\n' > "$dir/etc/passwd"
      printf 'root:x:0:\nrabbitmq:x:999:\n' > "$dir/etc/group"
      mkdir -p "$dir/var/lib/rabbitmq" "$dir/var/log/rabbitmq" "$dir/etc/rabbitmq/conf.d"
      chown -R 999:999 "$dir/var/lib/rabbitmq" "$dir/var/log/rabbitmq" "$dir/etc/rabbitmq"
      # /usr/lib/rabbitmq/bin/rabbitmq-server, not /usr/sbin's wrapper (that one switches user through su).
      infra_image rabbitmq "$dir" 999 '["/usr/lib/rabbitmq/bin/rabbitmq-server"]' \
        --env PATH=/usr/lib/rabbitmq/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env HOME=/var/lib/rabbitmq --env RABBITMQ_LOGS=- --env RABBITMQ_CONFIG_FILES=/etc/rabbitmq/conf.d \
        --env RABBITMQ_MNESIA_BASE=/var/lib/rabbitmq/mnesia --port 5672 \
        --label org.opencontainers.image.description="LSVCR local broker: Debian 12 rabbitmq-server" ;;
    azurite)
      # Debian 12 has neither a current Node.js nor azurite: this machine's node and its global npm install of azurite
      # (npm install -g azurite), copied in; coreutils for azurite's "#!/usr/bin/env node".
      need node nodejs; need azurite "nodejs, then npm install -g azurite"
      debian_rootfs "$dir" coreutils libacl1 libattr1 libselinux1 libpcre2-8-0 libgmp10
      azurite_dir=$(dirname "$(readlink -f "$(command -v azurite)")"); azurite_dir=${azurite_dir%/dist/src}
      mkdir -p "$dir/usr/local/bin" "$dir/usr/local/lib/node_modules" "$dir/data"
      cp -a "$(readlink -f "$(command -v node)")" "$dir/usr/local/bin/node"
      cp -a "$azurite_dir" "$dir/usr/local/lib/node_modules/azurite"
      ln -s ../lib/node_modules/azurite/dist/src/azurite.js "$dir/usr/local/bin/azurite"
      chown $app_uid:$app_uid "$dir/data"
      infra_image azurite "$dir" $app_uid '["azurite"]' --workingdir /data --port 10000 --port 10002 \
        --label org.opencontainers.image.version="$(sed -n 's/^  "version": "\(.*\)",/\1/p' "$azurite_dir/package.json")" \
        --label org.opencontainers.image.description="LSVCR local storage: azurite $(node --version)" ;;
  esac
  rm -rf "$dir"
done
echo "== done in $(( $(date +%s) - started )) s; sizes uncompressed (app layer, base layers) and of the OCI archive (gzip layers):"
cat "$work/sizes"
[ -z "${LSVCR_IMAGE_REGISTRY:-}" ] && echo "tarballs in $out (podman load -i $out/<name>.tar)"
