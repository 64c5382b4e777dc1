using System.Collections.Concurrent;
using LSVCR.Data;
using LSVCR.Modeling;
using static TorchSharp.torch;

namespace LSVCR.Training;

/// <summary>
/// One batch as flat row-major arrays, built off the training thread; <see cref="ToSrBatch"/> turns it into the
/// model's tensors with one copy per field. Candidates (training negatives or evaluation lists) ride along.
/// </summary>
public sealed class HostBatch
{
    public required int[] Examples { get; init; }
    public int Size => Examples.Length;
    public required int Lp { get; init; }
    public required int Lc { get; init; }
    /// <summary>[B·Lp]</summary>
    public required long[] PhotoHistory { get; init; }
    /// <summary>[B·Lp]</summary>
    public required long[] PhotoHistoryComment { get; init; }
    /// <summary>[B·Lc]</summary>
    public required long[] CommentHistoryPhoto { get; init; }
    /// <summary>All the comments of the B·Lc comment-history entries, entry after entry (no cap, no padding).</summary>
    public required long[] CommentHistoryComments { get; init; }
    /// <summary>[B·Lc + 1] entry e's comments are <c>CommentHistoryComments[offsets[e] .. offsets[e + 1]]</c>.</summary>
    public required long[] CommentHistoryOffsets { get; init; }
    /// <summary>[B]</summary>
    public required long[] Target { get; init; }
    /// <summary>Candidates per example (0 = none: Rec full softmax / full ranking).</summary>
    public int CandidateCount { get; set; }
    /// <summary>[B·CandidateCount], 0 = pad.</summary>
    public long[]? Candidates { get; set; }
    /// <summary>Evaluation only: relevance of each candidate, [B·CandidateCount].</summary>
    public bool[]? Positive { get; set; }

    public SrBatch ToSrBatch() => new()
    {
        PhotoHistory = tensor(PhotoHistory, [Size, Lp]),
        PhotoHistoryComment = tensor(PhotoHistoryComment, [Size, Lp]),
        CommentHistoryPhoto = tensor(CommentHistoryPhoto, [Size, Lc]),
        CommentHistoryComments = CommentBags.FromArrays(CommentHistoryComments, CommentHistoryOffsets),
        Target = tensor(Target, [Size]),
    };

    public Tensor? CandidateTensor() => Candidates is null ? null : tensor(Candidates, [Size, CandidateCount]);
}

/// <summary>
/// Turns an <see cref="ExampleSet"/> into batches (SrBatch docs): histories truncated to the most recent
/// <c>MaxPosition</c> entries, left-aligned and 0-padded at the end; each history video shown with one popular
/// comment (training: uniformly one of its first 3; evaluation: the first; none → 0); comment entries carry all their
/// interacted comments (MODEL.md §2.3: the model averages them, as the reference collator does, with no cap). Training batches also get their
/// candidates: CommRank 1 positive + negatives, Rec k sampled negatives when <c>negatives</c> is set.
/// </summary>
public sealed class BatchSource
{
    private readonly Catalog _catalog;
    private readonly ExampleSet _set;
    private readonly bool _training;
    private readonly bool _dropComments;
    private readonly int _maxPosition;
    private readonly int? _negatives;

    /// <param name="negatives">Training only. Rec: k sampled negatives (null = full softmax, no candidates).
    /// CommRank: negatives per positive (null = 19).</param>
    public BatchSource(Catalog catalog, ExampleSet set, bool training, int maxPosition = 50, bool dropComments = false, int? negatives = null)
    {
        _catalog = catalog;
        _set = set;
        _training = training;
        _maxPosition = maxPosition;
        _dropComments = dropComments;
        _negatives = set.Task == TaskKind.CommRank ? negatives ?? TrainOptions.DefaultCommRankNegatives : negatives;
        // A CommRank example without positives cannot be trained on (nothing to put first).
        TrainableExamples = training && set.Task == TaskKind.CommRank
            ? [.. Enumerable.Range(0, set.Count).Where(i => set.PositiveOffsets[i + 1] > set.PositiveOffsets[i])]
            : [.. Enumerable.Range(0, set.Count)];
    }

    public ExampleSet Set => _set;

    /// <summary>The examples an epoch iterates over (CommRank training skips examples without positives).</summary>
    public int[] TrainableExamples { get; }

    /// <summary>Assembles the batch of <paramref name="examples"/>; <paramref name="rng"/> drives the training-time draws.</summary>
    public HostBatch Assemble(ReadOnlySpan<int> examples, Random rng)
    {
        int b = examples.Length, lp = 1, lc = 1, comments = 0;
        foreach (int i in examples)
        {
            lp = Math.Max(lp, Math.Min(_maxPosition, _set.PhotoHistoryOf(i).Length));
            if (_dropComments) continue;
            var (s, e) = _set.CommentEntriesOf(i);
            int first = Math.Max(s, e - _maxPosition);
            lc = Math.Max(lc, e - first);
            comments += _set.CommentEntryOffsets[e] - _set.CommentEntryOffsets[first];
        }
        var batch = new HostBatch
        {
            Examples = examples.ToArray(), Lp = lp, Lc = lc,
            PhotoHistory = new long[b * lp], PhotoHistoryComment = new long[b * lp],
            CommentHistoryPhoto = new long[b * lc], CommentHistoryComments = new long[comments],
            CommentHistoryOffsets = new long[b * lc + 1],
            Target = new long[b],
        };
        int written = 0;
        for (int row = 0; row < b; row++)
        {
            int i = examples[row];
            batch.Target[row] = _set.TargetPhoto[i];
            var ph = _set.PhotoHistoryOf(i);
            ph = ph[Math.Max(0, ph.Length - _maxPosition)..];
            for (int j = 0; j < ph.Length; j++)
            {
                batch.PhotoHistory[row * lp + j] = ph[j];
                var videoComments = _catalog.CommentsOf(ph[j]);
                batch.PhotoHistoryComment[row * lp + j] = videoComments.Length == 0 ? 0
                    : _training ? videoComments[rng.Next(Math.Min(3, videoComments.Length))] : videoComments[0];
            }
            int first = 0, end = 0;
            if (!_dropComments)
            {
                var (s, e) = _set.CommentEntriesOf(i);
                (first, end) = (Math.Max(s, e - _maxPosition), e);
            }
            for (int j = 0; j < lc; j++)
            {
                if (first + j < end)
                {
                    int entry = first + j;
                    batch.CommentHistoryPhoto[row * lc + j] = _set.CommentHistoryPhoto[entry];
                    foreach (var c in _set.CommentsOfEntry(entry)) batch.CommentHistoryComments[written++] = c;
                }
                batch.CommentHistoryOffsets[row * lc + j + 1] = written;
            }
        }
        if (_training) AddTrainingCandidates(batch, rng);
        return batch;
    }

    private void AddTrainingCandidates(HostBatch batch, Random rng)
    {
        if (_negatives is not int negatives) return;
        int c = 1 + negatives, b = batch.Size;
        var candidates = new long[b * c];
        var scratch = new List<int>(c);
        for (int row = 0; row < b; row++)
        {
            int i = batch.Examples[row];
            var into = candidates.AsSpan(row * c, c);
            if (_set.Task == TaskKind.CommRank)
                Sampling.CommRankTraining(rng, _catalog, _set.TargetPhoto[i], _set.PositivesOf(i), negatives, into);
            else
            {
                scratch.Clear();
                scratch.Add(_set.TargetPhoto[i]);
                Sampling.NegativeVideos(rng, _catalog.PhotoCount, _set.TargetPhoto[i], negatives, scratch);
                for (int q = 0; q < scratch.Count; q++) into[q] = scratch[q];
            }
        }
        batch.CandidateCount = c;
        batch.Candidates = candidates;
    }

    /// <summary>
    /// One training epoch: the examples shuffled with <paramref name="rng"/>, cut into batches, assembled on a
    /// background thread at most <paramref name="prefetch"/> batches ahead. The same rng then drives the per-batch
    /// draws, in order, so an epoch is a pure function of the rng's seed.
    /// </summary>
    public IEnumerable<HostBatch> Epoch(int batchSize, Random rng, int prefetch, CancellationToken ct)
    {
        var order = (int[])TrainableExamples.Clone();
        Sampling.Shuffle(rng, order.AsSpan());
        IEnumerable<HostBatch> Produce()
        {
            for (int start = 0; start < order.Length; start += batchSize)
                yield return Assemble(order.AsSpan(start, Math.Min(batchSize, order.Length - start)), rng);
        }
        return Prefetch.Run(Produce(), prefetch, ct);
    }
}

/// <summary>Runs an enumerator on a background thread into a bounded queue, so assembling the next batches overlaps the
/// model's work on the current one. Exceptions of the producer surface in the consumer; abandoning the consumer stops it.</summary>
public static class Prefetch
{
    public static IEnumerable<T> Run<T>(IEnumerable<T> producer, int capacity, CancellationToken ct)
    {
        using var queue = new BlockingCollection<T>(Math.Max(1, capacity));
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        Exception? failure = null;
        var worker = Task.Run(() =>
        {
            try
            {
                foreach (var item in producer)
                    queue.Add(item, stop.Token);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested) { }
            catch (Exception e) { failure = e; }
            finally { queue.CompleteAdding(); }
        }, CancellationToken.None);
        try
        {
            foreach (var item in queue.GetConsumingEnumerable(ct))
                yield return item;
            worker.Wait(CancellationToken.None);
            if (failure is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(failure).Throw();
        }
        finally
        {
            stop.Cancel();
            try { worker.Wait(CancellationToken.None); } catch (AggregateException) { }
        }
    }
}
