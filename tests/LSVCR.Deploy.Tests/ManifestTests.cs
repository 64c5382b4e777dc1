using System.Text.RegularExpressions;
using k8s;
using k8s.Models;
using LSVCR.Steps;
using MassTransit;
using Microsoft.Extensions.Hosting;

namespace LSVCR.Deploy.Tests;

public sealed class ManifestTests
{
    public static readonly TheoryData<string> Overlays = new() { "overlays/local", "overlays/production" };
    public static readonly TheoryData<string> All = new() { "base", "overlays/local", "overlays/production" };

    /// <summary>The services deploy/build-images.sh builds and the base deploys.</summary>
    private static readonly string[] Services = ["runs", "embeddings", "alignment", "fine-tuning", "evaluation", "serving"];

    /// <summary>The queues each worker consumes: MassTransit's kebab-case names of the consumers the services register.</summary>
    private static readonly Dictionary<string, string[]> WorkerQueues = new()
    {
        ["embeddings"] = [Queue<GenerateDatasetConsumer>(), Queue<ComputeEmbeddingsConsumer>(), Queue<ComputeEmbeddingChunkConsumer>()],
        ["alignment"] = [Queue<AlignPreferencesConsumer>()],
        ["fine-tuning"] = [Queue<FineTuneConsumer>()],
        ["evaluation"] = [Queue<EvaluateConsumer>()],
    };

    private static string Queue<T>() where T : class, IConsumer => KebabCaseEndpointNameFormatter.Instance.Consumer<T>();

    private static readonly HashSet<string> KnownKinds =
    [
        "Namespace", "ConfigMap", "Secret", "Service", "Deployment", "PodDisruptionBudget", "HorizontalPodAutoscaler",
        "PersistentVolumeClaim", "ScaledObject", "TriggerAuthentication",
    ];

    [Theory, MemberData(nameof(All))]
    public void Renders_into_known_kinds_only_each_named_once(string dir)
    {
        var r = Rendered.Of(dir);
        Assert.NotEmpty(r.Objects);
        foreach (var o in r.Objects)
        {
            Assert.Contains(o.Kind, KnownKinds);
            Assert.False(string.IsNullOrEmpty(o.Metadata?.Name), $"{dir}: a {o.Kind} without a name");
        }
        var duplicates = r.Objects.GroupBy(o => (o.Kind, o.Metadata.Name)).Where(g => g.Count() > 1).Select(g => g.Key).ToList();
        Assert.Empty(duplicates);
    }

    [Theory, MemberData(nameof(Overlays))]
    public void Overlays_put_everything_in_the_lsvcr_namespace(string dir)
    {
        foreach (var o in Rendered.Of(dir).Objects.Where(o => o.Kind != "Namespace"))
            Assert.True(o.Metadata.NamespaceProperty == "lsvcr", $"{dir}: {o.Kind}/{o.Metadata.Name} is in namespace '{o.Metadata.NamespaceProperty}'");
    }

    [Fact]
    public void Base_and_local_overlay_need_no_custom_resources()
    {
        // KEDA is optional: only the production overlay (through components/keda) uses its kinds.
        Assert.DoesNotContain(Rendered.Of("base").Objects, o => o.ApiVersion.Contains("keda.sh"));
        Assert.DoesNotContain(Rendered.Of("overlays/local").Objects, o => o.ApiVersion.Contains("keda.sh"));
        Assert.Equal(WorkerQueues.Count, Rendered.Of("overlays/production").All<Keda.ScaledObject>().Count());
    }

    [Theory, MemberData(nameof(All))]
    public void Every_service_has_a_deployment_probed_on_the_service_defaults_endpoints(string dir)
    {
        var r = Rendered.Of(dir);
        var port = int.Parse(r.Single<V1ConfigMap>("lsvcr-config").Data["ASPNETCORE_HTTP_PORTS"]);
        foreach (var name in Services)
        {
            var container = Assert.Single(r.Single<V1Deployment>(name).Spec.Template.Spec.Containers);
            var http = Assert.Single(container.Ports, p => p.Name == "http");
            Assert.Equal(port, http.ContainerPort);
            Assert.Equal(ServiceDefaultsExtensions.AlivePath, container.StartupProbe.HttpGet.Path);
            Assert.Equal(ServiceDefaultsExtensions.AlivePath, container.LivenessProbe.HttpGet.Path);
            Assert.Equal(ServiceDefaultsExtensions.HealthPath, container.ReadinessProbe.HttpGet.Path);
            foreach (var probe in new[] { container.StartupProbe, container.LivenessProbe, container.ReadinessProbe })
                Assert.Equal("http", probe.HttpGet.Port.Value);
            Assert.Contains(container.EnvFrom, e => e.ConfigMapRef?.Name == "lsvcr-config");
        }
    }

    [Theory, MemberData(nameof(All))]
    public void Every_container_has_cpu_and_memory_requests_within_limits(string dir)
    {
        foreach (var d in Rendered.Of(dir).All<V1Deployment>())
        foreach (var c in d.Spec.Template.Spec.Containers)
        foreach (var resource in new[] { "cpu", "memory" })
        {
            var where = $"{dir}: {d.Metadata.Name}/{c.Name} {resource}";
            Assert.True(c.Resources?.Requests?.ContainsKey(resource) == true, $"{where}: no request");
            Assert.True(c.Resources?.Limits?.ContainsKey(resource) == true, $"{where}: no limit");
            Assert.True(c.Resources.Requests[resource].ToDecimal() <= c.Resources.Limits[resource].ToDecimal(), $"{where}: request above limit");
            Assert.True(c.Resources.Requests[resource].ToDecimal() > 0, $"{where}: zero request");
        }
    }

    [Theory, MemberData(nameof(All))]
    public void Services_run_as_the_images_non_root_user_on_a_read_only_root(string dir)
    {
        var uid = long.Parse(Regex.Match(File.ReadAllText(Path.Combine(Rendered.RepoRoot, "deploy/build-images.sh")), @"(?m)^app_uid=(\d+)").Groups[1].Value);
        foreach (var name in Services.Append("bundle-installer"))
        {
            var pod = Rendered.Of(dir).Single<V1Deployment>(name).Spec.Template.Spec;
            Assert.True(pod.SecurityContext.RunAsNonRoot);
            Assert.Equal(uid, pod.SecurityContext.RunAsUser);
            var c = Assert.Single(pod.Containers);
            Assert.True(c.SecurityContext.ReadOnlyRootFilesystem);
            Assert.False(c.SecurityContext.AllowPrivilegeEscalation);
            // Writable places the services use: the jobs' work dir, the artifact cache, /tmp.
            var config = Rendered.Of(dir).Single<V1ConfigMap>("lsvcr-config").Data;
            foreach (var path in new[] { config["Jobs__WorkDirectory"], config["Artifacts__CacheDirectory"], "/tmp" })
                Assert.Contains(c.VolumeMounts, m => path.StartsWith(m.MountPath.TrimEnd('/') + "/") || path == m.MountPath);
        }
    }

    [Fact]
    public void The_build_script_builds_exactly_the_deployed_services()
    {
        var script = File.ReadAllText(Path.Combine(Rendered.RepoRoot, "deploy/build-images.sh"));
        var built = Regex.Matches(script, "(?m)^  \"([a-z-]+)\\|(services/[^\"]+\\.csproj)\"").Select(m => (Name: m.Groups[1].Value, Project: m.Groups[2].Value)).ToList();
        Assert.Equal(Services.Order(), built.Select(b => b.Name).Order());
        foreach (var b in built) Assert.True(File.Exists(Path.Combine(Rendered.RepoRoot, b.Project)), $"build-images.sh names {b.Project}, which does not exist");
        foreach (var name in Services)
            Assert.Equal($"lsvcr/{name}", Assert.Single(Rendered.Of("base").Single<V1Deployment>(name).Spec.Template.Spec.Containers).Image);
    }

    [Theory, MemberData(nameof(Overlays))]
    public void Every_referenced_config_map_and_secret_key_exists(string dir)
    {
        var r = Rendered.Of(dir);
        var maps = r.All<V1ConfigMap>().ToDictionary(m => m.Metadata.Name, m => (m.Data ?? new Dictionary<string, string>()).Keys.ToHashSet());
        var secrets = r.All<V1Secret>().ToDictionary(s => s.Metadata.Name,
            s => (s.Data?.Keys ?? []).Concat(s.StringData?.Keys ?? []).ToHashSet());
        void Key(Dictionary<string, HashSet<string>> set, string what, string name, string? key, string where)
        {
            Assert.True(set.TryGetValue(name, out var keys), $"{dir}: {where} names {what} '{name}', which the render does not contain");
            if (key is not null) Assert.True(keys!.Contains(key), $"{dir}: {where} names key '{key}' of {what} '{name}', which has only {string.Join(", ", keys!)}");
        }
        var checkedRefs = 0;
        foreach (var d in r.All<V1Deployment>())
        {
            var pod = d.Spec.Template.Spec;
            foreach (var c in pod.Containers)
            {
                var where = $"{d.Metadata.Name}/{c.Name}";
                foreach (var e in c.EnvFrom ?? [])
                {
                    if (e.ConfigMapRef is { } cm) { Key(maps, "ConfigMap", cm.Name, null, where); checkedRefs++; }
                    if (e.SecretRef is { } sr) { Key(secrets, "Secret", sr.Name, null, where); checkedRefs++; }
                }
                foreach (var e in c.Env ?? [])
                {
                    if (e.ValueFrom?.SecretKeyRef is { } s) { Key(secrets, "Secret", s.Name, s.Key, $"{where} env {e.Name}"); checkedRefs++; }
                    if (e.ValueFrom?.ConfigMapKeyRef is { } m) { Key(maps, "ConfigMap", m.Name, m.Key, $"{where} env {e.Name}"); checkedRefs++; }
                }
                foreach (var m in c.VolumeMounts ?? [])
                    Assert.True(pod.Volumes?.Any(v => v.Name == m.Name) == true, $"{dir}: {where} mounts volume '{m.Name}', which the pod does not declare");
            }
            foreach (var v in pod.Volumes ?? [])
            {
                if (v.ConfigMap is { } cm) { Key(maps, "ConfigMap", cm.Name, null, $"{d.Metadata.Name} volume {v.Name}"); checkedRefs++; }
                if (v.Secret is { } s) { Key(secrets, "Secret", s.SecretName, null, $"{d.Metadata.Name} volume {v.Name}"); checkedRefs++; }
                if (v.PersistentVolumeClaim is { } pvc)
                    Assert.Contains(r.All<V1PersistentVolumeClaim>(), p => p.Metadata.Name == pvc.ClaimName);
            }
        }
        foreach (var auth in r.All<Keda.TriggerAuthentication>())
        foreach (var t in auth.Spec.SecretTargetRef) { Key(secrets, "Secret", t.Name, t.Key, $"TriggerAuthentication {auth.Metadata.Name}"); checkedRefs++; }
        Assert.True(checkedRefs >= 15, $"{dir}: only {checkedRefs} references checked");
    }

    [Theory, MemberData(nameof(Overlays))]
    public void Services_get_the_connection_strings_their_code_reads(string dir)
    {
        var r = Rendered.Of(dir);
        string[] Connections(string name) => Assert.Single(r.Single<V1Deployment>(name).Spec.Template.Spec.Containers).Env
            .Where(e => e.Name.StartsWith("ConnectionStrings__")).Select(e => e.Name["ConnectionStrings__".Length..]).Order().ToArray();
        Assert.Equal(["artifacts", "bus", "runs"], Connections("runs"));
        Assert.Empty(Connections("serving")); // polls the shared bundle volume only
        Assert.Equal(["artifacts", "bus"], Connections("bundle-installer")); // ModelPublished + the bundle download
        // Long steps (DurableSteps: alignment, fine-tuning) keep their job records in the runs tables.
        foreach (var worker in WorkerQueues.Keys)
            Assert.Equal(worker is "alignment" or "fine-tuning" ? ["artifacts", "bus", "runs"] : ["artifacts", "bus"], Connections(worker));
    }

    [Theory, MemberData(nameof(All))]
    public void Labels_and_selectors_match(string dir)
    {
        var r = Rendered.Of(dir);
        var deployments = r.All<V1Deployment>().ToList();
        bool Selects(IDictionary<string, string> selector, V1Deployment d) =>
            selector.All(kv => d.Spec.Template.Metadata.Labels.TryGetValue(kv.Key, out var v) && v == kv.Value);
        foreach (var d in deployments)
            Assert.True(Selects(d.Spec.Selector.MatchLabels, d), $"{dir}: Deployment {d.Metadata.Name}'s selector does not match its pods");
        foreach (var s in r.All<V1Service>())
        {
            var target = Assert.Single(deployments, d => Selects(s.Spec.Selector, d));
            foreach (var p in s.Spec.Ports)
                Assert.Contains(target.Spec.Template.Spec.Containers.SelectMany(c => c.Ports), cp => cp.Name == p.TargetPort.Value || cp.ContainerPort.ToString() == p.TargetPort.Value);
        }
        Assert.Contains(r.All<V1Service>(), s => s.Metadata.Name == "runs");
        Assert.Contains(r.All<V1Service>(), s => s.Metadata.Name == "serving");
        var pdb = r.Single<V1PodDisruptionBudget>("serving");
        Assert.Equal("serving", Assert.Single(deployments, d => Selects(pdb.Spec.Selector.MatchLabels, d)).Metadata.Name);
        var hpa = r.Single<V2HorizontalPodAutoscaler>("serving");
        Assert.Equal(("Deployment", "serving"), (hpa.Spec.ScaleTargetRef.Kind, hpa.Spec.ScaleTargetRef.Name));
        Assert.True(hpa.Spec.MinReplicas <= hpa.Spec.MaxReplicas);
        // Readiness gates a rollout only if no old pod goes before a new one is ready.
        Assert.Equal("0", r.Single<V1Deployment>("serving").Spec.Strategy.RollingUpdate.MaxUnavailable.Value);
    }

    /// <summary>
    /// Serving's bundles: exactly one writer (bundle-installer: one replica, Recreate, the bus and the store) of the
    /// serving-bundles volume, and Serving pods that mount it read-only and read their bundle root from it — so a pod
    /// created after a ModelPublished (rollout, scale-up) still finds the current bundle.
    /// </summary>
    [Theory, MemberData(nameof(All))]
    public void Serving_pods_read_the_bundles_one_installer_writes(string dir)
    {
        var r = Rendered.Of(dir);
        var claim = r.Single<V1PersistentVolumeClaim>("serving-bundles");
        Assert.Equal(dir == "overlays/local" ? ["ReadWriteOnce"] : ["ReadWriteMany"], claim.Spec.AccessModes);
        var writers = new List<string>();
        foreach (var d in r.All<V1Deployment>())
        {
            var pod = d.Spec.Template.Spec;
            var volume = pod.Volumes?.SingleOrDefault(v => v.PersistentVolumeClaim?.ClaimName == "serving-bundles");
            if (volume is null) continue;
            var c = Assert.Single(pod.Containers);
            var mount = Assert.Single(c.VolumeMounts, m => m.Name == volume.Name);
            Assert.Equal(mount.MountPath, Assert.Single(c.Env, e => e.Name == "Serving__BundleRoot").Value);
            var readOnly = mount.ReadOnlyProperty == true || volume.PersistentVolumeClaim.ReadOnlyProperty == true;
            if (!readOnly) writers.Add(d.Metadata.Name);
            Assert.Equal(!readOnly, c.Env.Any(e => e.Name == "ConnectionStrings__bus")); // only the writer consumes ModelPublished
        }
        Assert.Equal(["bundle-installer"], writers);
        var installer = r.Single<V1Deployment>("bundle-installer");
        Assert.Equal(1, installer.Spec.Replicas);
        Assert.Equal("Recreate", installer.Spec.Strategy.Type); // no second writer during its rollout
        Assert.Equal(Assert.Single(r.Single<V1Deployment>("serving").Spec.Template.Spec.Containers).Image, installer.Spec.Template.Spec.Containers[0].Image);
        var serving = r.Single<V1Deployment>("serving").Spec.Template.Spec;
        Assert.Contains(serving.Volumes, v => v.PersistentVolumeClaim?.ClaimName == "serving-bundles" && v.PersistentVolumeClaim.ReadOnlyProperty == true);
        // It takes no traffic and is not counted as Serving by the PDB or the HPA.
        var labels = installer.Spec.Template.Metadata.Labels;
        Assert.DoesNotContain(r.All<V1Service>(), s => s.Spec.Selector.All(kv => labels.TryGetValue(kv.Key, out var v) && v == kv.Value));
        Assert.False(r.Single<V1PodDisruptionBudget>("serving").Spec.Selector.MatchLabels.All(kv => labels.TryGetValue(kv.Key, out var v) && v == kv.Value));
    }

    /// <summary>Peak RSS (VmHWM, MB) measured in deploy/podman-proof.sh (docs/deploy.md, "Resources"): the largest
    /// figure of any proof run per service.</summary>
    private static readonly Dictionary<string, int> MeasuredPeakMb = new()
    {
        ["runs"] = 178, ["embeddings"] = 951, ["alignment"] = 3798, ["fine-tuning"] = 1471, ["evaluation"] = 572,
        ["serving"] = 166, ["bundle-installer"] = 166,
    };

    [Theory, MemberData(nameof(All))]
    public void Memory_requests_leave_headroom_above_the_measured_peaks(string dir)
    {
        foreach (var (name, peakMb) in MeasuredPeakMb)
        {
            var resources = Assert.Single(Rendered.Of(dir).Single<V1Deployment>(name).Spec.Template.Spec.Containers).Resources;
            var requestMb = resources.Requests["memory"].ToDecimal() / (1024 * 1024);
            Assert.True(requestMb >= peakMb * 1.25m, $"{dir}: {name} requests {requestMb:F0} MiB, under 1.25 × its measured peak {peakMb} MB");
        }
    }

    [Theory, MemberData(nameof(All))]
    public void Training_workers_get_time_to_finish_a_step_before_they_are_killed(string dir)
    {
        foreach (var worker in new[] { "alignment", "fine-tuning" })
        {
            var pod = Rendered.Of(dir).Single<V1Deployment>(worker).Spec.Template.Spec;
            Assert.True(pod.TerminationGracePeriodSeconds >= 3600, $"{worker} grace {pod.TerminationGracePeriodSeconds} s");
            // The host must stop waiting for the step before the kubelet's SIGKILL, so it can close the broker connection.
            var shutdown = int.Parse(Assert.Single(pod.Containers[0].Env, e => e.Name == "shutdownTimeoutSeconds").Value);
            Assert.InRange(shutdown, 60, pod.TerminationGracePeriodSeconds!.Value - 60);
        }
    }

    [Fact]
    public void Keda_scales_each_worker_on_the_queues_its_consumers_read()
    {
        var r = Rendered.Of("overlays/production");
        var auths = r.All<Keda.TriggerAuthentication>().Select(a => a.Metadata.Name).ToHashSet();
        var scaled = r.All<Keda.ScaledObject>().ToList();
        Assert.Equal(WorkerQueues.Keys.Order(), scaled.Select(s => s.Spec.ScaleTargetRef.Name).Order());
        foreach (var s in scaled)
        {
            var target = r.Single<V1Deployment>(s.Spec.ScaleTargetRef.Name);
            Assert.Equal(WorkerQueues[target.Metadata.Name].Order(), s.Spec.Triggers.Select(t => t.Metadata["queueName"]).Order());
            foreach (var t in s.Spec.Triggers)
            {
                Assert.Equal("rabbitmq", t.Type);
                Assert.Contains(t.AuthenticationRef!.Name, auths);
            }
            Assert.True(s.Spec.MinReplicaCount >= 1 && s.Spec.MinReplicaCount <= s.Spec.MaxReplicaCount);
        }
        Assert.True(r.All<Keda.ScaledObject>().Single(s => s.Metadata.Name == "fine-tuning").Spec.MinReplicaCount >= 2,
            "Rec and CommRank train on two instances at once");
    }

    [Fact]
    public void Local_overlay_connects_to_the_in_cluster_broker_and_storage()
    {
        var r = Rendered.Of("overlays/local");
        var connections = r.All<V1Secret>().Single(s => s.Metadata.Name.StartsWith("lsvcr-connections"));
        string Value(string key) => System.Text.Encoding.UTF8.GetString(connections.Data[key]);
        int ServicePort(string service) => Assert.Single(r.Single<V1Service>(service).Spec.Ports).Port;

        var bus = new Uri(Value("bus"));
        Assert.Equal("amqp", bus.Scheme);
        Assert.Equal("rabbitmq", bus.Host);
        Assert.Equal(ServicePort("rabbitmq"), bus.Port);
        var credentials = r.All<V1Secret>().Single(s => s.Metadata.Name.StartsWith("rabbitmq-credentials")).Data;
        Assert.Equal($"{System.Text.Encoding.UTF8.GetString(credentials["username"])}:{System.Text.Encoding.UTF8.GetString(credentials["password"])}", bus.UserInfo);

        var azurite = r.Single<V1Service>("azurite").Spec.Ports.ToDictionary(p => p.Name, p => p.Port);
        foreach (var key in new[] { "artifacts", "runs" })
        {
            var parts = Value(key).Split(';', StringSplitOptions.RemoveEmptyEntries).Select(p => p.Split('=', 2)).ToDictionary(p => p[0], p => p[1]);
            Assert.Equal(new Uri($"http://azurite:{azurite["blob"]}/{parts["AccountName"]}"), new Uri(parts["BlobEndpoint"]));
            Assert.Equal(new Uri($"http://azurite:{azurite["table"]}/{parts["AccountName"]}"), new Uri(parts["TableEndpoint"]));
        }
        var version = Regex.Match(File.ReadAllText(Path.Combine(Rendered.RepoRoot, "Directory.Build.props")), "<Version>(.*)</Version>").Groups[1].Value;
        foreach (var name in Services)
            {
            var container = r.Single<V1Deployment>(name).Spec.Template.Spec.Containers[0];
            Assert.Equal($"lsvcr/{name}:{version}", container.Image); // what build-images.sh names its archives' images
            Assert.True(container.ImagePullPolicy is null or "IfNotPresent", $"{name}: images loaded into the nodes must not be pulled");
        }
        // The broker and the store: the images build-images.sh --infra builds (none can be pulled offline).
        var infra = Regex.Match(File.ReadAllText(Path.Combine(Rendered.RepoRoot, "deploy/build-images.sh")), @"(?m)^infra=\(([a-z ]+)\)").Groups[1].Value.Split(' ');
        Assert.Equal(["rabbitmq", "azurite"], infra);
        foreach (var name in infra)
            Assert.Equal($"lsvcr/{name}:{version}", Assert.Single(r.Single<V1Deployment>(name).Spec.Template.Spec.Containers).Image);
        // No subPath (podman kube play does not support it): the broker's ConfigMap is mounted as its conf.d.
        Assert.All(r.All<V1Deployment>().SelectMany(d => d.Spec.Template.Spec.Containers).SelectMany(c => c.VolumeMounts ?? []), m => Assert.Null(m.SubPath));
    }

    [Fact]
    public void Production_overlay_ships_placeholders_not_credentials_and_no_in_cluster_infrastructure()
    {
        var r = Rendered.Of("overlays/production");
        foreach (var s in r.All<V1Secret>())
        foreach (var (key, value) in s.Data)
            Assert.Contains("REPLACE", System.Text.Encoding.UTF8.GetString(value));
        Assert.DoesNotContain(r.All<V1Deployment>(), d => d.Metadata.Name is "rabbitmq" or "azurite");
        Assert.All(r.All<V1Deployment>(), d => Assert.DoesNotContain("localhost", d.Spec.Template.Spec.Containers[0].Image));
        Assert.StartsWith("amqps://", System.Text.Encoding.UTF8.GetString(r.Single<V1Secret>("lsvcr-connections").Data["bus"]));
    }
}
