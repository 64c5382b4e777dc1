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
# Usage: deploy/build-images.sh [--official] [service ...]     services: runs embeddings alignment fine-tuning evaluation serving
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

base_image=${LSVCR_BASE_IMAGE:-}
selected=()
for arg in "$@"; do
  case $arg in
    --official) base_image=mcr.microsoft.com/dotnet/aspnet:10.0 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    -*) echo "unknown option $arg (see --help)" >&2; exit 2 ;;
    *) selected+=("$arg") ;;
  esac
done
if [ ${#selected[@]} -gt 0 ]; then
  for s in "${selected[@]}"; do
    printf '%s\n' "${services[@]}" | grep -q "^$s|" || { echo "unknown service '$s' (known: runs embeddings fine-tuning evaluation serving)" >&2; exit 2; }
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

libstdcxx=()
if [ -z "$base_image" ]; then
  need buildah buildah; need docker-registry docker-registry; need dpkg-deb dpkg; need python3 python3; need readelf binutils
  dotnet_root=$(dirname "$(readlink -f "$(command -v dotnet)")")
  aspnet_version=$(ls "$dotnet_root/shared/Microsoft.AspNetCore.App" | sort -V | tail -1)
  netcore_version=$(ls "$dotnet_root/shared/Microsoft.NETCore.App" | sort -V | tail -1)

  echo "== base root filesystem: Debian 12 packages + ASP.NET Core $aspnet_version (from $dotnet_root)"
  rootfs=$work/rootfs
  mkdir -p "$work/debs" "$rootfs"
  # What .NET needs on Linux (https://learn.microsoft.com/dotnet/core/install/linux-debian#dependencies); libtorch brings
  # its own libgomp, ONNX Runtime needs only libc/libstdc++. apt-get download: the packages of this machine's sources.
  (cd "$work/debs" && apt-get download -qq libc6 libgcc-s1 libstdc++6 libicu72 libssl3 zlib1g ca-certificates tzdata 2>/dev/null) ||
    { echo "build-images: apt-get download failed (run apt-get update first)" >&2; exit 1; }
  for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$rootfs"; done
  rm -rf "$rootfs"/usr/share/{doc,man,info,lintian,locale}
  # ca-certificates' maintainer script builds the bundle; no dpkg runs here, so build it the same way.
  mkdir -p "$rootfs/etc/ssl/certs"
  cat "$rootfs"/usr/share/ca-certificates/mozilla/*.crt > "$rootfs/etc/ssl/certs/ca-certificates.crt"
  ln -sf /usr/share/zoneinfo/Etc/UTC "$rootfs/etc/localtime"
  mkdir -p "$rootfs/usr/share/dotnet/shared" "$rootfs/usr/bin" "$rootfs/tmp" "$rootfs/home/app" "$rootfs/app"
  chmod 1777 "$rootfs/tmp"
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
  buildah_store=(--root "$work/storage" --runroot "$work/run" --storage-driver vfs)
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
echo "== service images on $base_image (tag $tag)"
printf '%-12s %8s %8s %10s %8s\n' image app_MB base_MB archive_MB seconds > "$work/sizes"
for entry in "${services[@]}"; do
  name=${entry%%|*}; project=${entry#*|}
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
echo "== done in $(( $(date +%s) - started )) s; sizes uncompressed (app layer, base layers) and of the OCI archive (gzip layers):"
cat "$work/sizes"
[ -z "${LSVCR_IMAGE_REGISTRY:-}" ] && echo "tarballs in $out (podman load -i $out/<name>.tar)"
