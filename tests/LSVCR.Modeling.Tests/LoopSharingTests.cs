using LSVCR.Modeling.Cpu;
using static TorchSharp.torch;

namespace LSVCR.Modeling.Tests;

/// <summary>A shard worker that is done takes items of the kernel loop another worker is still running.</summary>
[Trait("Category", "Kernels")]
public class LoopSharingTests
{
    private static void OnTwoWorkers(Action<int> body)
    {
        var before = get_num_threads();
        set_num_threads(2);
        try { ShardWorkers.Run(2, body); }
        finally { set_num_threads(before); }
    }

    [Fact]
    public void An_idle_worker_helps_and_every_item_runs_exactly_once()
    {
        const int items = 120;
        var runs = new int[items];
        var threads = new int[items];
        int owner = 0;
        OnTwoWorkers(s =>
        {
            if (s != 0) return; // worker 1 ends at once and helps
            owner = Environment.CurrentManagedThreadId;
            CpuKernels.ForEach(items, 16, (i, scratch) =>
            {
                Assert.NotEqual(0, scratch);
                Interlocked.Increment(ref runs[i]);
                threads[i] = Environment.CurrentManagedThreadId;
                Thread.Sleep(2); // slow items, so the helper surely arrives while some are left
            });
        });
        Assert.All(runs, r => Assert.Equal(1, r));
        Assert.Contains(threads, t => t == owner);
        Assert.Contains(threads, t => t != owner);
    }

    [Fact]
    public void An_item_that_throws_on_either_thread_fails_the_owners_loop_and_the_workers_stay_usable()
    {
        var error = Assert.Throws<InvalidOperationException>(() => OnTwoWorkers(s =>
        {
            if (s != 0) return;
            CpuKernels.ForEach(200, 0, (i, _) =>
            {
                Thread.Sleep(1);
                if (i == 150) throw new InvalidOperationException("item 150");
            });
        }));
        Assert.Equal("item 150", error.Message);
        var total = 0;
        OnTwoWorkers(s => CpuKernels.ForEach(50, 0, (i, _) => Interlocked.Add(ref total, i)));
        Assert.Equal(2 * (49 * 50 / 2), total);
    }

    [Fact]
    public void Outside_the_shard_workers_loops_are_not_offered()
    {
        var before = get_num_threads();
        set_num_threads(1);
        try
        {
            var threads = new HashSet<int>();
            CpuKernels.ForEach(20, 0, (i, _) => { lock (threads) threads.Add(Environment.CurrentManagedThreadId); });
            Assert.Equal([Environment.CurrentManagedThreadId], threads);
        }
        finally { set_num_threads(before); }
    }
}
