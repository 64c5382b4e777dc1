using System.Runtime.ExceptionServices;

namespace LSVCR.Modeling.Cpu;

/// <summary>
/// Lets a data-parallel shard worker that has finished its slice take items of the kernel loops
/// (<see cref="CpuKernels.ForEach"/>) another worker is still running, so the step waits less for the slower slice.
/// <para>Why: the slices of a step do the same work, yet on this VM one often ends 50–200 ms before the other (the
/// two vCPUs do not run at the same speed from moment to moment), and the step waits for the later one. About half
/// of a slice's time is in these loops; their items write disjoint outputs and fixed per-item partial sums, so which
/// thread runs an item changes no result. No package offers cross-thread help for hand-written loops, hence this.</para>
/// One loop is offered at a time (the latest one opened); a worker helps only while some worker of the same
/// <see cref="ShardWorkers"/> run is still busy with its own slice.
/// </summary>
internal static class LoopSharing
{
    /// <summary>True on a shard worker's thread while it runs a slice (set by <see cref="ShardWorkers"/>).</summary>
    [ThreadStatic] internal static bool Offering;

    private static Loop? _open;

    internal sealed class Loop(int items, int scratchFloats, Action<int, nint> body)
    {
        private int _next = -1;
        private int _helpers;
        private ExceptionDispatchInfo? _error;

        /// <summary>Every item has been handed out.</summary>
        public bool Exhausted => Volatile.Read(ref _next) >= items - 1;

        /// <summary>Runs unclaimed items until none is left; false if there was none to take.</summary>
        public bool Work(Func<int, nint> scratch)
        {
            var any = false;
            for (int i; (i = Interlocked.Increment(ref _next)) < items;)
            {
                any = true;
                try { body(i, scratch(scratchFloats)); }
                catch (Exception e)
                {
                    Interlocked.CompareExchange(ref _error, ExceptionDispatchInfo.Capture(e), null);
                    Volatile.Write(ref _next, items); // stop handing out items
                }
            }
            return any;
        }

        /// <summary>A helper's turn: counted, so the owner does not return while an item of its loop still runs.</summary>
        public void Help(Func<int, nint> scratch)
        {
            Interlocked.Increment(ref _helpers);
            try { Work(scratch); }
            finally { Interlocked.Decrement(ref _helpers); }
        }

        /// <summary>The owner's end: waits for helpers still inside an item, then rethrows the first exception.</summary>
        public void Finish()
        {
            Interlocked.CompareExchange(ref _open, null, this);
            var spin = new SpinWait();
            while (Volatile.Read(ref _helpers) > 0) spin.SpinOnce(sleep1Threshold: -1);
            _error?.Throw();
        }
    }

    /// <summary>Runs a loop on the calling worker with its items open to idle workers.</summary>
    public static void Run(int items, int scratchFloats, Action<int, nint> body, Func<int, nint> scratch)
    {
        var loop = new Loop(items, scratchFloats, body);
        Volatile.Write(ref _open, loop);
        try { loop.Work(scratch); }
        finally { loop.Finish(); }
    }

    /// <summary>An idle worker's wait for the others: takes items of the open loop while <paramref name="busy"/>.</summary>
    public static void HelpWhile(Func<bool> busy, Func<int, nint> scratch)
    {
        var spin = new SpinWait();
        while (busy())
        {
            if (Volatile.Read(ref _open) is { Exhausted: false } loop)
            {
                loop.Help(scratch);
                spin = new SpinWait();
            }
            else spin.SpinOnce(sleep1Threshold: -1);
        }
    }
}
