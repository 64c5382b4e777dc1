using LSVCR.Modeling.Cpu;
using static TorchSharp.torch;

namespace LSVCR.Modeling.Tests;

/// <summary>A tiny catalogue and batch: small enough for fast tests, big enough to exercise every path.</summary>
internal static class Tiny
{
    public const int Photos = 7, Comments = 13, TextDim = 8;

    public static RecComConfig Config(Func<RecComConfig, RecComConfig>? edit = null)
    {
        var c = new RecComConfig
        {
            PhotoCount = Photos, CommentCount = Comments, TextDim = TextDim, Hidden = 8, Heads = 2, Inner = 16,
            MaxPosition = 5,
        };
        return edit is null ? c : edit(c);
    }

    public static (Tensor Photo, Tensor Comment) Texts(int seed = 1, int photos = Photos)
    {
        using var g = new Generator((ulong)seed);
        return (randn(photos, TextDim, generator: g), randn(Comments, TextDim, generator: g));
    }

    public static RecCom Model(RecComConfig? config = null, int seed = 3, ModelBackend? backend = null)
    {
        manual_seed(seed);
        config ??= Config();
        var (p, c) = Texts(photos: config.PhotoCount);
        return new RecCom(config, p, c, backend);
    }

    /// <summary>3 users; user 2 has an empty comment history (all pad) unless <paramref name="everyHistoryNonEmpty"/>
    /// gives it one entry (video 2, comment 3).</summary>
    public static SrBatch Batch(bool everyHistoryNonEmpty = false)
    {
        var photos = tensor(new long[,] { { 1, 3, 0 }, { 6, 5, 4 }, { 0, 0, 0 } });
        var comments = PaddedComments();
        if (everyHistoryNonEmpty)
        {
            photos[2, 0] = tensor(2L);
            comments[2, 0, 0] = tensor(3L);
        }
        return new()
        {
            PhotoHistory = tensor(new long[,] { { 1, 2, 3, 4 }, { 5, 6, 0, 0 }, { 2, 0, 0, 0 } }),
            PhotoHistoryComment = tensor(new long[,] { { 1, 0, 3, 4 }, { 5, 6, 0, 0 }, { 7, 0, 0, 0 } }),
            CommentHistoryPhoto = photos,
            CommentHistoryComments = CommentBags.FromPadded(comments),
            Target = tensor(new long[] { 5, 1, 3 }),
        };
    }

    /// <summary>The comments of <see cref="Batch"/>'s comment-history entries as a 0-padded [3, 3, 2] tensor.</summary>
    public static Tensor PaddedComments() => tensor(new long[,,]
    {
        { { 1, 2 }, { 3, 0 }, { 0, 0 } },
        { { 8, 0 }, { 9, 10 }, { 11, 0 } },
        { { 0, 0 }, { 0, 0 }, { 0, 0 } },
    });
}
