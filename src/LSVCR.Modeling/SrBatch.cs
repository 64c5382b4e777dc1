using static TorchSharp.torch;

namespace LSVCR.Modeling;

/// <summary>
/// One batch of model inputs as CPU int64 tensors (0 = pad everywhere). Histories are left-aligned, padded at the
/// end and already truncated to the most recent <see cref="RecComConfig.MaxPosition"/> entries. The training library
/// assembles these from the compact dataset arrays; the model never sees string ids.
/// </summary>
public sealed class SrBatch : IDisposable
{
    /// <summary>[B, Lp] video ids of the liked-video history.</summary>
    public required Tensor PhotoHistory { get; init; }
    /// <summary>[B, Lp] the popular comment shown with each history video (training: one of its first 3 at random;
    /// evaluation: the first; 0 = the video has none).</summary>
    public required Tensor PhotoHistoryComment { get; init; }
    /// <summary>[B, Lc] video ids of the comment-history entries.</summary>
    public required Tensor CommentHistoryPhoto { get; init; }
    /// <summary>The comments the user interacted with under each entry, all of them (B·Lc entries in row-major order,
    /// padding positions empty); the model averages them.</summary>
    public required CommentBags CommentHistoryComments { get; init; }
    /// <summary>[B] Rec: the next video (used only by losses); CommRank: the video being watched (the query).</summary>
    public required Tensor Target { get; init; }

    public long Size => PhotoHistory.shape[0];

    public void Dispose()
    {
        PhotoHistory.Dispose();
        PhotoHistoryComment.Dispose();
        CommentHistoryPhoto.Dispose();
        CommentHistoryComments.Dispose();
        Target.Dispose();
    }
}
