using TorchSharp;

namespace LSVCR.Modeling.Cpu;

/// <summary>
/// The process-wide CPU settings a host applies once, at start-up: the CLI's Program and commands, a service's
/// start-up, or a container's environment. Library code (trainers, benches, the model) never calls these: a process
/// may host several runs, and they share whatever is set here.
/// </summary>
public static class CpuHost
{
    /// <summary>First thing in <c>Main</c>: libtorch's OpenMP threads wait passively between parallel regions
    /// (<see cref="OpenMp.PreferPassiveWaiting"/>; only effective before libtorch loads).</summary>
    public static bool BeforeTorchLoads() => OpenMp.PreferPassiveWaiting();

    /// <summary>libtorch's intra-op thread count (<paramref name="threads"/> null = leave libtorch's default) and, for
    /// long training or benchmark processes, <see cref="CpuAllocator.KeepFreedMemory"/> (irreversible: memory is not
    /// returned to the OS until exit, so services that serve requests leave it off).</summary>
    public static void Configure(int? threads, bool keepFreedMemory)
    {
        if (threads is < 1) throw new ArgumentOutOfRangeException(nameof(threads), threads, "threads must be at least 1");
        if (keepFreedMemory) CpuAllocator.KeepFreedMemory();
        if (threads is int t) torch.set_num_threads(t);
    }
}
