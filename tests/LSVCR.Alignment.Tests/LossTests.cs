using static TorchSharp.torch;

namespace LSVCR.Alignment.Tests;

public class LossTests
{
    private static Tensor M(float[] v, int rows) => tensor(v, rows, v.Length / rows);

    [Fact]
    public void Nce_is_cross_entropy_of_cosines_over_the_batch()
    {
        var eye = M([1, 0, 0, 1], 2);
        // logits [[1,0],[0,1]] (T=1): each row −log(e/(e+1)) = log(1 + e^−1).
        Assert.Equal(Math.Log(1 + Math.Exp(-1)), Nce(eye, eye), 5);
        // Scale does not matter (cosines), and T divides the logits: T=0.5 → log(1 + e^−2).
        Assert.Equal(Math.Log(1 + Math.Exp(-2)), AlignmentLosses.Nce(M([3, 0, 0, 5], 2), eye, 0.5).item<float>(), 5);
    }

    [Fact]
    public void Nce_depends_on_the_direction()
    {
        var x = M([1, 0, 0, 1], 2);
        var y = M([1, 0, 1, 0], 2);
        // x rows against y: [1,1] and [0,0] → log 2 each.
        Assert.Equal(Math.Log(2), Nce(x, y), 5);
        // y rows against x: [1,0] label 0 → log(1+e^−1); [1,0] label 1 → log(1+e).
        Assert.Equal((Math.Log(1 + Math.Exp(-1)) + Math.Log(1 + Math.E)) / 2, Nce(y, x), 5);
    }

    [Fact]
    public void Bhv_prefers_the_primary_behaviour()
    {
        var llm = M([1, 0], 1);
        var primary = M([2, 0], 1);
        var other = M([0, 1], 1);
        // logits [1, 0]/0.5 = [2, 0], label 0 → log(1 + e^−2); swapped roles → log(1 + e^2).
        Assert.Equal(Math.Log(1 + Math.Exp(-2)), AlignmentLosses.Bhv(llm, primary, other, 0.5).item<float>(), 5);
        Assert.Equal(Math.Log(1 + Math.Exp(2)), AlignmentLosses.Bhv(llm, other, primary, 0.5).item<float>(), 5);
    }

    [Fact]
    public void Lm_counts_only_response_tokens()
    {
        // ids [0, 1, 2]; response = the last token. logits[1] = [0, 0, ln 2] → p(2) = 2/4 → ln 2.
        // logits[0] (predicting the prompt token 1) is huge and wrong but masked out.
        var logits = tensor(new float[] { 50, -50, -50, 0, 0, MathF.Log(2), 9, 9, 9 }, 1, 3, 3);
        var ids = tensor(new long[] { 0, 1, 2 }, 1, 3);
        var response = tensor(new long[] { 0, 0, 1 }, 1, 3);
        Assert.Equal(Math.Log(2), AlignmentLosses.Lm(logits, ids, response).item<float>(), 5);
        // With the middle token also a response token: mean of ln 2 and CE([50,−50,−50], 1) = 100 + log(1+e^−100) ≈ 100.
        var both = tensor(new long[] { 0, 1, 1 }, 1, 3);
        Assert.Equal((Math.Log(2) + 100) / 2, AlignmentLosses.Lm(logits, ids, both).item<float>(), 3);
        Assert.Throws<ArgumentException>(() => AlignmentLosses.Lm(logits, ids, zeros_like(ids)));
    }

    [Fact]
    public void Total_is_lm_plus_rec_plus_half_contrast()
    {
        var llm = M([1, 0, 0, 1], 2);
        var primary = M([1, 0, 1, 1], 2);
        var other = M([0, 1, 1, 0], 2);
        var target = M([1, 1, 0, 1], 2);
        var lm = tensor(0.25f);
        var t = AlignmentLosses.Combine(lm, llm, primary, other, target, 0.07);
        double bhv = AlignmentLosses.Bhv(llm, primary, other, 0.07).item<float>();
        double nce = (AlignmentLosses.Nce(primary, llm, 0.07).item<float>() + AlignmentLosses.Nce(llm, primary, 0.07).item<float>()) / 2;
        double rec = AlignmentLosses.Nce(primary, target, 0.07).item<float>();
        Assert.Equal(bhv + nce, t.Contrast.item<float>(), 4);
        Assert.Equal(rec, t.Rec.item<float>(), 5);
        Assert.Equal(0.25 + rec + 0.5 * (bhv + nce), t.Total.item<float>(), 4);
        Assert.Equal(rec + 0.5 * (bhv + nce), AlignmentLosses.Combine(null, llm, primary, other, target, 0.07).Total.item<float>(), 4);
    }

    private static double Nce(Tensor x, Tensor y) => AlignmentLosses.Nce(x, y, 1.0).item<float>();
}
