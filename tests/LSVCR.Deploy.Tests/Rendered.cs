using System.Diagnostics;
using k8s;
using k8s.Models;

namespace LSVCR.Deploy.Tests;

/// <summary>
/// One Kustomize directory under deploy/ rendered with <c>kubectl kustomize</c> (Kustomize 5) and read back with the
/// Kubernetes client's typed model in strict mode: an unknown field, a misspelt kind or a wrong type fails the read.
/// KEDA's two kinds are read into the small typed models in <see cref="Keda"/>, also strictly.
/// </summary>
public sealed class Rendered
{
    public static readonly string RepoRoot = FindRepoRoot();
    public string Directory { get; }
    public string Yaml { get; }
    public IReadOnlyList<IKubernetesObject<V1ObjectMeta>> Objects { get; }

    private Rendered(string directory, string yaml, IReadOnlyList<IKubernetesObject<V1ObjectMeta>> objects) =>
        (Directory, Yaml, Objects) = (directory, yaml, objects);

    private static readonly Dictionary<string, Rendered> Cache = new();

    /// <summary>Renders deploy/<paramref name="relative"/> (cached per test run).</summary>
    public static Rendered Of(string relative)
    {
        lock (Cache)
        {
            if (Cache.TryGetValue(relative, out var done)) return done;
            var dir = Path.Combine(RepoRoot, "deploy", relative);
            var yaml = Kustomize(dir);
            var typeMap = new Dictionary<string, Type>
            {
                ["keda.sh/v1alpha1/ScaledObject"] = typeof(Keda.ScaledObject),
                ["keda.sh/v1alpha1/TriggerAuthentication"] = typeof(Keda.TriggerAuthentication),
            };
            var objects = KubernetesYaml.LoadAllFromString(yaml, typeMap, strict: true)
                .Select(o => o as IKubernetesObject<V1ObjectMeta>
                    ?? throw new InvalidDataException($"{relative}: rendered object {o.GetType().Name} has no metadata"))
                .ToList();
            return Cache[relative] = new Rendered(dir, yaml, objects);
        }
    }

    public IEnumerable<T> All<T>() => Objects.OfType<T>();

    public T Single<T>(string name) where T : IKubernetesObject<V1ObjectMeta> =>
        All<T>().SingleOrDefault(o => o.Metadata.Name == name)
        ?? throw new Xunit.Sdk.XunitException($"{Directory}: no {typeof(T).Name} named '{name}' in the render");

    /// <summary>
    /// The kubectl on PATH (or $KUBECTL). Missing → the test fails: validating manifests is the point of these tests,
    /// so a machine without kubectl must not report them as passed (.ci/run checks for it up front).
    /// </summary>
    private static string Kustomize(string dir)
    {
        var kubectl = Environment.GetEnvironmentVariable("KUBECTL") is { Length: > 0 } k ? k
            : (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Where(p => p.Length > 0)
                .Select(p => Path.Combine(p, "kubectl")).FirstOrDefault(File.Exists)
            ?? throw new InvalidOperationException("kubectl (with Kustomize 5) is not on PATH: install kubectl >= 1.27 to render deploy/ (see docs/deploy.md)");
        var psi = new ProcessStartInfo(kubectl, ["kustomize", dir])
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(2))) { process.Kill(); throw new TimeoutException($"kubectl kustomize {dir} took over 2 minutes"); }
        if (process.ExitCode != 0 || stderr.Result.Trim().Length > 0)
            throw new InvalidOperationException($"kubectl kustomize {dir} failed (exit {process.ExitCode}): {stderr.Result}");
        return stdout.Result;
    }

    private static string FindRepoRoot()
    {
        var dir = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(dir, "LSVCR.sln")))
            dir = Path.GetDirectoryName(dir) ?? throw new InvalidOperationException("repository root (LSVCR.sln) not found above " + AppContext.BaseDirectory);
        return dir;
    }
}

/// <summary>The parts of KEDA's CRDs (keda.sh/v1alpha1) the manifests use; strict reading rejects anything else.</summary>
public static class Keda
{
    public sealed class ScaledObject : IKubernetesObject<V1ObjectMeta>
    {
        public string ApiVersion { get; set; } = "";
        public string Kind { get; set; } = "";
        public V1ObjectMeta Metadata { get; set; } = new();
        public ScaledObjectSpec Spec { get; set; } = new();
    }

    public sealed class ScaledObjectSpec
    {
        public ScaleTarget ScaleTargetRef { get; set; } = new();
        public int? MinReplicaCount { get; set; }
        public int? MaxReplicaCount { get; set; }
        public int? CooldownPeriod { get; set; }
        public List<Trigger> Triggers { get; set; } = [];
    }

    public sealed class ScaleTarget
    {
        public string Name { get; set; } = "";
    }

    public sealed class Trigger
    {
        public string Type { get; set; } = "";
        public Dictionary<string, string> Metadata { get; set; } = [];
        public NameRef? AuthenticationRef { get; set; }
    }

    public sealed class NameRef
    {
        public string Name { get; set; } = "";
    }

    public sealed class TriggerAuthentication : IKubernetesObject<V1ObjectMeta>
    {
        public string ApiVersion { get; set; } = "";
        public string Kind { get; set; } = "";
        public V1ObjectMeta Metadata { get; set; } = new();
        public TriggerAuthenticationSpec Spec { get; set; } = new();
    }

    public sealed class TriggerAuthenticationSpec
    {
        public List<SecretTargetRef> SecretTargetRef { get; set; } = [];
    }

    public sealed class SecretTargetRef
    {
        public string Parameter { get; set; } = "";
        public string Name { get; set; } = "";
        public string Key { get; set; } = "";
    }
}
