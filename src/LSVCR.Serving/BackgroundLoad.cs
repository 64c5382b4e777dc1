using System.Runtime;
using System.Runtime.InteropServices;

namespace LSVCR.Serving;

/// <summary>
/// Runs a bundle load (hashing, reading, session creation, warm-up: seconds of CPU) on a thread of its own at a lower
/// OS priority (Linux nice 10 for that thread; ONNX Runtime threads it starts inherit it), with the GC in sustained
/// low-latency mode meanwhile. On a small machine under load the batch workers then keep the cores and the load takes
/// what they leave, instead of both slowing down until the admission queue fills and requests are refused.
/// </summary>
internal static partial class BackgroundLoad
{
    public const int Nice = 10;

    public static Task<T> Run<T>(Func<T> body, string name)
    {
        var result = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() =>
        {
            LowerThisThread();
            var mode = GCSettings.LatencyMode;
            try
            {
                GCSettings.LatencyMode = GCLatencyMode.SustainedLowLatency;
                result.SetResult(body());
            }
            catch (Exception e) { result.SetException(e); }
            finally { GCSettings.LatencyMode = mode; }
        }) { IsBackground = true, Name = name };
        thread.Start();
        return result.Task;
    }

    private static void LowerThisThread()
    {
        if (!OperatingSystem.IsLinux()) return;
        try { _ = setpriority(0 /* PRIO_PROCESS: on Linux, a thread id */, gettid(), Nice); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { } // then it runs at normal priority
    }

    [LibraryImport("libc.so.6")] private static partial int gettid();
    [LibraryImport("libc.so.6")] private static partial int setpriority(int which, int who, int prio);
}
