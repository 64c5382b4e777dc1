using System.CommandLine;
using LSVCR.Modeling.Cpu;

namespace LSVCR.Cli.Commands;

/// <summary>What every command that runs the model shares: the backend opt-out, and the process-wide CPU settings
/// the CLI, as the host, applies before a run (<see cref="CpuHost"/>).</summary>
internal static class HostOptions
{
    public static Option<bool> NoCpuKernels() => new("--no-cpu-kernels")
    {
        Description = "Run the plain TorchSharp modules instead of the fused CPU kernels (same results up to float rounding; slower).",
    };

    /// <summary>Before a training, evaluation or bench run: libtorch threads (null = libtorch's default) and, for these
    /// long-running processes, keeping freed memory in the heap (measured: bench train 134 → 305 samples/s).</summary>
    public static void Apply(int? threads, bool keepFreedMemory = true) => CpuHost.Configure(threads, keepFreedMemory);
}
