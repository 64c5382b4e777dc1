using LSVCR.Modeling;
using static TorchSharp.torch;

namespace LSVCR.Alignment.Tests;

public class StageOneRecComTests
{
    [Fact]
    public void Random_positions_are_a_sorted_subset_of_the_table()
    {
        using var g = new Generator(5);
        for (int trial = 0; trial < 20; trial++)
        {
            var p = RecCom.RandomPositions(20, 50, g).data<long>().ToArray();
            Assert.Equal(20, p.Distinct().Count());
            Assert.Equal(p.Order(), p);
            Assert.All(p, v => Assert.InRange(v, 0, 49));
        }
        Assert.Throws<ArgumentException>(() => RecCom.RandomPositions(51, 50));
    }

    [Fact]
    public void Each_row_keeps_its_tasks_head_and_the_other_history()
    {
        manual_seed(2);
        const int e = 8;
        var config = AlignmentModels.StageOneConfig(e) with { Hidden = 8, Heads = 2, Inner = 16 };
        using var sr = new RecCom(config, zeros(2, e), zeros(1, e));
        sr.eval();
        using var _ = no_grad();
        var pIds = tensor(new long[] { 3, 4, 0, 5, 6, 7 }, 2, 3);
        var cIds = tensor(new long[] { 8, 0, 9, 1 }, 2, 2);
        Stage1Batch Batch(Tensor watched, bool firstIsRec) => new(pIds, randn(2, 3, e, generator: new Generator(1)), randn(2, 3, e, generator: new Generator(2)),
            cIds, randn(2, 2, e, generator: new Generator(3)), randn(2, 2, e, generator: new Generator(4)), watched,
            tensor(new[] { firstIsRec, false }), tensor(new long[] { 1, 7, 30 }), tensor(new long[] { 0, 12 }));
        var a = sr.EncodeStage1(Batch(randn(2, e, generator: new Generator(5)), true));
        var b = sr.EncodeStage1(Batch(randn(2, e, generator: new Generator(6)), true));
        // Row 0 is Rec: rec_att needs no watched video; row 1 is CommRank: its query is the watched title.
        Assert.True(a.Primary[0].allclose(b.Primary[0]));
        Assert.False(a.Primary[1].allclose(b.Primary[1], rtol: 0, atol: 1e-4));
        Assert.False(a.Primary[0].allclose(a.Other[0], rtol: 0, atol: 1e-4));
        Assert.Equal(1f, a.Primary.norm(1)[0].item<float>(), 4);
        // As a CommRank row, row 0 reads the comment history with the watched title as query.
        var c = sr.EncodeStage1(Batch(randn(2, e, generator: new Generator(5)), false));
        Assert.False(c.Primary[0].allclose(a.Primary[0], rtol: 0, atol: 1e-4));
        Assert.True(c.Primary[1].allclose(a.Primary[1]));
    }

    [Fact]
    public void The_stage_two_form_is_refused()
    {
        using var sr = new RecCom(new RecComConfig { PhotoCount = 2, CommentCount = 1, TextDim = 4 }, zeros(2, 4), zeros(1, 4));
        var x = zeros(1, 1, 4);
        var batch = new Stage1Batch(ones(1, 1, dtype: ScalarType.Int64), x, x, ones(1, 1, dtype: ScalarType.Int64), x, x, zeros(1, 4),
            tensor(new[] { true }), tensor(new long[] { 0 }), tensor(new long[] { 0 }));
        Assert.Throws<InvalidOperationException>(() => sr.EncodeStage1(batch));
    }
}
