using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.Extensions.Logging;

namespace LSVCR.Serving;

/// <summary>A request admitted to a batcher: its model (held by a reference until it is answered) and its result.</summary>
internal abstract class WorkItem<TResult>(ServingModel model)
{
    public ServingModel Model { get; } = model;
    public TaskCompletionSource<TResult> Result { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
}

/// <summary>
/// Bounded micro-batching for one endpoint. Admission counts requests from enqueue to answer; past
/// <see cref="ServingOptions.QueueCapacity"/> <see cref="TryAdmit"/> refuses at once (the caller answers 429), so latency
/// cannot grow without bound. Workers close a batch at <see cref="ServingOptions.MaxBatchSize"/> requests or
/// <see cref="ServingOptions.MaxBatchDelay"/> after its first request, and a batch only holds requests of one model
/// (a request that started on a model finishes on it, across a swap).
/// </summary>
internal sealed class MicroBatcher<TItem, TResult> : IAsyncDisposable where TItem : WorkItem<TResult>
{
    // Workers are threads of their own that block while they wait and while a batch runs (tens of ms of ONNX Runtime).
    // On the thread pool (async workers) those blocking runs held pool threads that Kestrel needs to read requests
    // and write answers; on 2 cores the pool has 2 threads before it injects more, so requests waited in bursts and
    // the admission queue filled (429s) whenever anything else — a bundle load — took CPU as well.
    private readonly ConcurrentQueue<TItem> _queue = new();
    private readonly SemaphoreSlim _available = new(0);
    private readonly Action<IReadOnlyList<TItem>> _run;
    private readonly ServingOptions _options;
    private readonly ServingMetrics _metrics;
    private readonly ILogger _log;
    private readonly string _endpoint;
    private readonly Thread[] _workers;
    private readonly TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile bool _closed;
    private int _depth, _running;

    public MicroBatcher(string endpoint, Action<IReadOnlyList<TItem>> run, ServingOptions options, ServingMetrics metrics, ILogger log)
    {
        _endpoint = endpoint;
        _run = run;
        _options = options;
        _metrics = metrics;
        _log = log;
        _running = options.EffectiveWorkers;
        _workers = [.. Enumerable.Range(0, options.EffectiveWorkers).Select(i => new Thread(Work) { IsBackground = true, Name = $"lsvcr {endpoint} batch {i}" })];
        foreach (var w in _workers) w.Start();
    }

    public int Depth => Volatile.Read(ref _depth);

    /// <summary>Takes a queue slot; false (and counted as rejected) when the queue is full.</summary>
    public bool TryAdmit()
    {
        if (Interlocked.Increment(ref _depth) <= _options.QueueCapacity) return true;
        Interlocked.Decrement(ref _depth);
        _metrics.Rejected.Add(1, new KeyValuePair<string, object?>("endpoint", _endpoint));
        return false;
    }

    /// <summary>Queues an admitted item; the slot is given back when its result is set.</summary>
    public async Task<TResult> RunAsync(TItem item)
    {
        try
        {
            if (_closed) throw new ObjectDisposedException(nameof(MicroBatcher<TItem, TResult>));
            _queue.Enqueue(item);
            _available.Release();
            return await item.Result.Task.ConfigureAwait(false);
        }
        finally
        {
            Interlocked.Decrement(ref _depth);
        }
    }

    /// <summary>The next queued item, waiting at most <paramref name="timeoutMs"/> (−1: until one comes or the batcher closes).</summary>
    private bool TryTake(int timeoutMs, out TItem item)
    {
        item = null!;
        if (!_available.Wait(timeoutMs)) return false;
        // Each Release matches one Enqueue, and the enqueue happens first: the item is there.
        if (_queue.TryDequeue(out var taken)) { item = taken; return true; }
        _available.Release(); // a closing wake-up (no item): passed on, so every worker sees one
        return false;
    }

    private void Work()
    {
        var batch = new List<TItem>(_options.MaxBatchSize);
        TItem? carry = null;
        var delay = _options.MaxBatchDelay;
        try
        {
            while (true)
            {
                batch.Clear();
                if (carry is null)
                {
                    if (!TryTake(Timeout.Infinite, out carry))
                    {
                        if (_closed) return;
                        continue;
                    }
                }
                batch.Add(carry);
                carry = null;
                var deadline = Stopwatch.GetTimestamp() + (long)(delay.TotalSeconds * Stopwatch.Frequency);
                while (batch.Count < _options.MaxBatchSize)
                {
                    var left = deadline - Stopwatch.GetTimestamp();
                    // Milliseconds, rounded up: a wait of 0 only takes what is queued already.
                    var wait = left <= 0 ? 0 : (int)Math.Ceiling(left * 1000.0 / Stopwatch.Frequency);
                    if (!TryTake(wait, out var next)) break;
                    if (!ReferenceEquals(next.Model, batch[0].Model)) { carry = next; break; }
                    batch.Add(next);
                }
                _metrics.BatchSize.Record(batch.Count, new KeyValuePair<string, object?>("endpoint", _endpoint));
                try
                {
                    _run(batch);
                }
                catch (Exception e)
                {
                    // One bad batch never stops the worker: its requests fail, the next batch runs.
                    _log.LogError(e, "{Endpoint} batch of {Count} failed on model {Version}", _endpoint, batch.Count, batch[0].Model.Version);
                    foreach (var item in batch) item.Result.TrySetException(e);
                }
            }
        }
        finally
        {
            if (Interlocked.Decrement(ref _running) == 0) _stopped.TrySetResult();
        }
    }

    /// <summary>Stops taking requests; the workers finish what is queued, then end.</summary>
    public async ValueTask DisposeAsync()
    {
        _closed = true;
        _available.Release();
        await _stopped.Task.ConfigureAwait(false);
    }
}
