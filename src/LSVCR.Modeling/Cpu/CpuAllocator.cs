using System.Runtime.InteropServices;

namespace LSVCR.Modeling.Cpu;

/// <summary>
/// libtorch's CPU allocator is glibc malloc. Tensors above the mmap threshold (≤ 32 MiB) are mapped and unmapped on
/// every allocation, so each training step page-faults its large temporaries in again (scores [B, videos], attention
/// probabilities, id–text block logits); on this VM that cost more than the arithmetic (measured: full-softmax
/// forward+backward 1.1 → 0.3 CPU-s, id–text loss 0.68 → 0.14 CPU-s per history). Keeping freed memory in the heap
/// removes it. Process-wide and irreversible: memory is then not returned to the OS until exit, so only long
/// training/benchmark processes opt in; services do not. No package offers this (jemalloc/tcmalloc would need a
/// native preload), hence the two mallopt calls.
/// </summary>
public static partial class CpuAllocator
{
    private const int MTrimThreshold = -1, MTopPad = -2, MMmapMax = -4;

    /// <summary>Returns true when applied (Linux glibc), false where mallopt is unavailable.</summary>
    public static bool KeepFreedMemory()
    {
        if (!OperatingSystem.IsLinux()) return false;
        try
        {
            return mallopt(MMmapMax, 0) == 1
                   & mallopt(MTrimThreshold, int.MaxValue) == 1
                   & mallopt(MTopPad, 64 << 20) == 1;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false; // musl or another libc: keep its defaults
        }
    }

    [LibraryImport("libc", EntryPoint = "mallopt")]
    private static partial int mallopt(int param, int value);
}
