using LSVCR.Modeling.Cpu;
using static TorchSharp.torch;

namespace LSVCR.Modeling.Tests;

/// <summary>The comment-entry mean: the float32 CPU kernel (<see cref="GatherMean"/>) and the plain libtorch form
/// (<see cref="CommentBags.Mean"/>), both against means computed by hand.</summary>
[Trait("Category", "Kernels")]
public class GatherMeanTests
{
    /// <summary>Entry lists of very different lengths, an empty entry, a pad id inside a list, and one entry of 40
    /// comments (beyond the 16 an older layout kept).</summary>
    private static (CommentBags Bags, long[][] Lists) Entries(int tableRows, int seed)
    {
        var rng = new Random(seed);
        var lists = Enumerable.Range(0, 50).Select(e => e switch
        {
            3 => [],
            7 => new long[] { 0, 5, 0, 9 },
            11 => [.. Enumerable.Range(0, 40).Select(_ => (long)rng.Next(1, tableRows))],
            _ => [.. Enumerable.Range(0, rng.Next(0, 6)).Select(_ => (long)rng.Next(0, tableRows))],
        }).ToArray();
        var offsets = new long[lists.Length + 1];
        for (var e = 0; e < lists.Length; e++) offsets[e + 1] = offsets[e] + lists[e].Length;
        return (CommentBags.FromArrays([.. lists.SelectMany(l => l)], offsets), lists);
    }

    /// <summary>The mean written out in doubles, one row at a time: pads skipped, empty → 0.</summary>
    private static float[] HandMean(Tensor table, long[] list)
    {
        var cols = (int)table.shape[1];
        var sum = new double[cols];
        var count = 0;
        foreach (var id in list)
        {
            if (id == 0) continue;
            var row = table[id].data<float>().ToArray();
            for (var j = 0; j < cols; j++) sum[j] += row[j];
            count++;
        }
        return [.. sum.Select(v => (float)(count == 0 ? 0 : v / count))];
    }

    [Fact]
    public void Kernel_and_plain_mean_equal_the_hand_computed_mean_of_every_comment_of_an_entry()
    {
        using var g = new Generator(31);
        using var table = randn(40, 24, generator: g); // row 0 (pad) non-zero: it must still be skipped
        var (bags, lists) = Entries(40, 5);
        using var _ = bags;
        using var kernel = GatherMean.Of(table, bags);
        using var plain = bags.Mean(table);
        Assert.Equal(new long[] { 50, 24 }, kernel.shape);
        Assert.Equal(40, lists[11].Length);
        for (var e = 0; e < lists.Length; e++)
        {
            var expected = HandMean(table, lists[e]);
            var k = kernel[e].data<float>().ToArray();
            var p = plain[e].data<float>().ToArray();
            for (var j = 0; j < expected.Length; j++)
            {
                Assert.Equal(expected[j], k[j], 1e-5f);
                Assert.Equal(expected[j], p[j], 1e-5f);
            }
        }
        Assert.True(kernel[3].eq(0).all().item<bool>());
        Assert.True(kernel[7].allclose(table[5].add(table[9]).div(2), 1e-6, 1e-6));
        // The 40-comment entry is not the mean of its last 16 (what the capped layout computed).
        var last16 = HandMean(table, lists[11][^16..]);
        Assert.True(kernel[11].sub(tensor(last16)).abs().max().item<float>() > 1e-3);
    }

    [Fact]
    public void Slices_of_the_bags_rebase_their_offsets()
    {
        using var g = new Generator(33);
        using var table = randn(40, 8, generator: g);
        var (bags, _) = Entries(40, 6);
        using var _b = bags;
        using var whole = GatherMean.Of(table, bags);
        var slice = bags.Slice(10, 5);
        Assert.Equal(0, slice.Offsets[0].item<long>());
        Assert.True(GatherMean.Of(table, slice).eq(whole.narrow(0, 10, 5)).all().item<bool>());
        Assert.True(slice.Mean(table).allclose(whole.narrow(0, 10, 5), 1e-6, 1e-6));
    }

    [Fact]
    public void FromPadded_drops_pads_and_keeps_entry_boundaries()
    {
        using var bags = CommentBags.FromPadded(tensor(new long[,,] { { { 1, 2 }, { 0, 0 } }, { { 0, 3 }, { 4, 0 } } }));
        Assert.Equal(new long[] { 1, 2, 3, 4 }, bags.Ids.data<long>().ToArray());
        Assert.Equal(new long[] { 0, 2, 2, 3, 4 }, bags.Offsets.data<long>().ToArray());
    }

    [Fact]
    public void An_id_outside_the_table_is_rejected()
    {
        using var table = randn(5, 4);
        using var bags = CommentBags.FromArrays([1, 5], [0, 2]);
        var e = Assert.Throws<ArgumentException>(() => GatherMean.Of(table, bags));
        Assert.Contains("outside", e.Message);
    }

    [Fact]
    public void A_double_table_gives_the_same_mean()
    {
        using var g = new Generator(32);
        using var table = randn(30, 16, generator: g);
        var (bags, _) = Entries(30, 7);
        using var _b = bags;
        using var single = GatherMean.Of(table, bags);
        using var dbl = GatherMean.Of(table.to(ScalarType.Float64), bags);
        Assert.Equal(ScalarType.Float64, dbl.dtype);
        Assert.True(dbl.to(ScalarType.Float32).allclose(single, 1e-6, 1e-6));
    }
}
