using System.Runtime.InteropServices;

namespace LSVCR.Modeling.Cpu;

/// <summary>
/// libtorch's OpenMP (libgomp) threads spin between parallel regions by default. A training step is thousands of
/// short ops, so on a machine shared with other work the spinning threads take the cores the working thread needs:
/// measured on this 2-core host (load ≈ 5), `bench train` ran at 76 samples/s with spinning and 227 samples/s with
/// passive waiting. libgomp reads OMP_WAIT_POLICY once, when libtorch loads, and .NET's
/// Environment.SetEnvironmentVariable does not reach the native environment on Linux, hence libc setenv.
/// </summary>
public static partial class OpenMp
{
    /// <summary>Sets OMP_WAIT_POLICY=PASSIVE for libtorch unless the user set it. Must run before the first torch
    /// call of the process; returns false (and changes nothing) when libtorch's OpenMP is already loaded, when the
    /// variable is already set, or off Linux.</summary>
    public static bool PreferPassiveWaiting()
    {
        if (!OperatingSystem.IsLinux() || Environment.GetEnvironmentVariable("OMP_WAIT_POLICY") is not null) return false;
        try
        {
            if (File.ReadAllText("/proc/self/maps").Contains("libgomp", StringComparison.Ordinal)) return false;
            return setenv("OMP_WAIT_POLICY", "PASSIVE", 0) == 0;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    [LibraryImport("libc", EntryPoint = "setenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int setenv(string name, string value, int overwrite);
}
