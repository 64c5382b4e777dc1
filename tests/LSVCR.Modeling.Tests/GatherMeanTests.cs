using LSVCR.Modeling.Cpu;
using static TorchSharp.torch;

namespace LSVCR.Modeling.Tests;

[Trait("Category", "Kernels")]
public class GatherMeanTests
{
    [Fact]
    public void Mean_of_the_listed_rows_skips_pads_and_gives_zero_for_empty_entries()
    {
        manual_seed(31);
        using var table = randn(40, 24);
        table[0] = randn(24); // a non-zero pad row must still be skipped
        using var ids = randint(0, 40, [600, 3]);
        ids[5] = tensor(new long[] { 0, 0, 0 });
        ids[6] = tensor(new long[] { 0, 7, 0 });
        using var mean = GatherMean.Of(table, ids.view(20, 30, 3));

        using var mask = ids.ne(0).unsqueeze(-1).to(ScalarType.Float32);
        using var expected = table.index_select(0, ids.view(-1)).view(600, 3, 24).mul(mask).sum(1).div(mask.sum(1).clamp_min(1f));
        Assert.Equal(new long[] { 20, 30, 24 }, mean.shape);
        Assert.True(mean.view(600, 24).allclose(expected, 1e-6, 1e-6));
        Assert.True(mean.view(600, 24)[5].eq(0).all().item<bool>());
        Assert.True(mean.view(600, 24)[6].equal(table[7]).all().item<bool>());
    }

    [Fact]
    public void An_id_outside_the_table_is_rejected()
    {
        using var table = randn(5, 4);
        var e = Assert.Throws<ArgumentException>(() => GatherMean.Of(table, tensor(new long[] { 1, 5 }).view(1, 2)));
        Assert.Contains("outside", e.Message);
    }

    [Fact]
    public void A_double_table_gives_the_same_mean()
    {
        manual_seed(32);
        using var table = randn(30, 16);
        using var ids = randint(0, 30, [50, 3]);
        using var single = GatherMean.Of(table, ids);
        using var dbl = GatherMean.Of(table.to(ScalarType.Float64), ids);
        Assert.Equal(ScalarType.Float64, dbl.dtype);
        Assert.True(dbl.to(ScalarType.Float32).allclose(single, 1e-6, 1e-6));
    }
}
