using System.Threading.Channels;
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
    private readonly Channel<TItem> _queue = Channel.CreateUnbounded<TItem>(new UnboundedChannelOptions { SingleReader = false });
    private readonly Action<IReadOnlyList<TItem>> _run;
    private readonly ServingOptions _options;
    private readonly ServingMetrics _metrics;
    private readonly ILogger _log;
    private readonly string _endpoint;
    private readonly Task[] _workers;
    private int _depth;

    public MicroBatcher(string endpoint, Action<IReadOnlyList<TItem>> run, ServingOptions options, ServingMetrics metrics, ILogger log)
    {
        _endpoint = endpoint;
        _run = run;
        _options = options;
        _metrics = metrics;
        _log = log;
        _workers = [.. Enumerable.Range(0, options.EffectiveWorkers).Select(_ => Task.Factory.StartNew(WorkAsync, CancellationToken.None,
            TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap())];
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
            if (!_queue.Writer.TryWrite(item)) throw new ObjectDisposedException(nameof(MicroBatcher<TItem, TResult>));
            return await item.Result.Task.ConfigureAwait(false);
        }
        finally
        {
            Interlocked.Decrement(ref _depth);
        }
    }

    private async Task WorkAsync()
    {
        var reader = _queue.Reader;
        var batch = new List<TItem>(_options.MaxBatchSize);
        TItem? carry = null;
        while (true)
        {
            batch.Clear();
            if (carry is null)
            {
                if (!await reader.WaitToReadAsync().ConfigureAwait(false)) return;
                if (!reader.TryRead(out carry)) continue;
            }
            batch.Add(carry);
            carry = null;
            var deadline = DateTime.UtcNow + _options.MaxBatchDelay;
            while (batch.Count < _options.MaxBatchSize)
            {
                if (reader.TryRead(out var next))
                {
                    if (!ReferenceEquals(next.Model, batch[0].Model)) { carry = next; break; }
                    batch.Add(next);
                    continue;
                }
                var wait = deadline - DateTime.UtcNow;
                if (wait <= TimeSpan.Zero) break;
                using var timeout = new CancellationTokenSource(wait);
                try
                {
                    if (!await reader.WaitToReadAsync(timeout.Token).ConfigureAwait(false)) break;
                }
                catch (OperationCanceledException) { break; }
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

    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        await Task.WhenAll(_workers).ConfigureAwait(false);
    }
}
