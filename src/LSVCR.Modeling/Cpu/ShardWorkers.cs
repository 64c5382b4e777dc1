using System.Runtime.ExceptionServices;
using static TorchSharp.torch;

namespace LSVCR.Modeling.Cpu;

/// <summary>
/// Runs the data-parallel shards of a training step (<see cref="SrLoss.Backward"/>): concurrently on long-lived
/// threads, each with an equal share of the caller's libtorch threads, or one after another on the calling thread
/// when it has fewer threads than shards.
/// <para>Why dedicated threads: libtorch's thread count (OpenMP's and MKL's) is a per-thread setting, so each worker
/// sets its share once; changing it per call would rebuild libtorch's pools, and .NET pool threads would carry the
/// setting into unrelated work. Why shards at all: a step is thousands of ops, many too small to split, so two
/// threads inside each op ran at 1.3–1.5× one thread on this 2-core machine, while two independent halves of the
/// batch keep both cores busy (measured in docs/model.md). No package offers a libtorch-aware worker pool for
/// TorchSharp, hence this class.</para>
/// </summary>
internal static class ShardWorkers
{
    private static readonly Lock Gate = new();
    private static Pool? _pool;
    [ThreadStatic] private static bool _onWorker;

    /// <summary>Calls <paramref name="body"/>(0 … <paramref name="shards"/>−1) and returns when all have ended; the
    /// first exception of a shard is rethrown as it was thrown (after every shard has ended). Steps of concurrent
    /// callers (two trainers in one process) take turns on the one pool, a whole step at a time, so they never
    /// interleave; a call from inside a shard is refused (it would wait for the workers it runs on).</summary>
    public static void Run(int shards, Action<int> body)
    {
        if (_onWorker)
            throw new InvalidOperationException("ShardWorkers.Run was called from inside a shard: data-parallel steps cannot nest (the shard workers are busy with the outer step).");
        var threads = get_num_threads();
        if (shards == 1 || threads < shards)
        {
            for (var s = 0; s < shards; s++) body(s);
            return;
        }
        // One step at a time per process: concurrent callers (tests, two trainers) take turns on the workers.
        lock (Gate)
        {
            var perShard = threads / shards;
            if (_pool is null || _pool.Size != shards || _pool.ThreadsPerShard != perShard)
            {
                _pool?.Dispose();
                _pool = new Pool(shards, perShard);
                set_num_threads(threads); // the workers' setting also changed libtorch's process-wide default
            }
            _pool.Run(body);
        }
    }

    private sealed class Pool : IDisposable
    {
        private readonly Worker[] _workers;

        public Pool(int size, int threadsPerShard)
        {
            (Size, ThreadsPerShard) = (size, threadsPerShard);
            using var ready = new CountdownEvent(size);
            _workers = Enumerable.Range(0, size).Select(i => new Worker(i, threadsPerShard, ready)).ToArray();
            ready.Wait();
        }

        public int Size { get; }
        public int ThreadsPerShard { get; }

        public void Run(Action<int> body)
        {
            // A worker done with its shard takes items of the kernel loops the others are still running.
            var busy = _workers.Length;
            for (var s = 0; s < _workers.Length; s++)
            {
                var shard = s;
                _workers[s].Begin(() =>
                {
                    LoopSharing.Offering = true;
                    try { body(shard); }
                    finally
                    {
                        LoopSharing.Offering = false;
                        Interlocked.Decrement(ref busy);
                        LoopSharing.HelpWhile(() => Volatile.Read(ref busy) > 0, CpuKernels.Scratch);
                    }
                });
            }
            ExceptionDispatchInfo? first = null;
            foreach (var w in _workers) first ??= w.End();
            first?.Throw();
        }

        public void Dispose()
        {
            foreach (var w in _workers) w.Stop();
        }
    }

    private sealed class Worker
    {
        private readonly SemaphoreSlim _start = new(0);
        private readonly ManualResetEventSlim _done = new(false);
        private Action? _job;
        private ExceptionDispatchInfo? _error;
        private volatile bool _stop;

        public Worker(int index, int threads, CountdownEvent ready)
        {
            var thread = new Thread(() => Loop(threads, ready), 16 << 20) { IsBackground = true, Name = $"lsvcr-shard-{index}" };
            thread.Start();
        }

        private void Loop(int threads, CountdownEvent ready)
        {
            // libtorch initialises a thread's count from the process-wide one on its first parallel call: let that
            // happen first, or it would overwrite the share set next.
            get_num_threads();
            set_num_threads(threads);
            _onWorker = true;
            ready.Signal();
            while (true)
            {
                _start.Wait();
                if (_stop) return;
                try { _job!(); }
                catch (Exception e) { _error = ExceptionDispatchInfo.Capture(e); }
                finally { _done.Set(); }
            }
        }

        public void Begin(Action job)
        {
            (_job, _error) = (job, null);
            _done.Reset();
            _start.Release();
        }

        public ExceptionDispatchInfo? End()
        {
            _done.Wait();
            _job = null;
            return _error;
        }

        public void Stop()
        {
            _stop = true;
            _start.Release();
        }
    }
}
