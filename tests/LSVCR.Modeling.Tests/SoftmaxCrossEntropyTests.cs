using LSVCR.Modeling.Cpu;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LSVCR.Modeling.Tests;

[Trait("Category", "Kernels")]
public class SoftmaxCrossEntropyTests
{
    [Theory]
    [InlineData(37, 1003, 24)] // candidate rows with a scalar tail
    [InlineData(512, 2000, 64)]
    [InlineData(1, 16, 3)]
    public void Fused_cross_entropy_matches_libtorch_values_and_gradients(int batch, int candidates, int dim)
    {
        manual_seed(batch + candidates);
        using var u = randn(batch, dim).mul(3).requires_grad_(true);
        using var v = randn(candidates, dim).requires_grad_(true);
        var targets = randint(0, candidates, [batch]);
        targets[0] = tensor(candidates - 1L); // the last candidate
        if (batch > 1) targets[1] = tensor(0L);

        var fused = SoftmaxCrossEntropy.Loss(u, v, targets);
        fused.mul(0.7).backward();
        var (du, dv) = (u.grad!.clone(), v.grad!.clone());
        u.grad!.zero_();
        v.grad!.zero_();

        var reference = F.cross_entropy(u.matmul(v.t()), targets);
        reference.mul(0.7).backward();

        Assert.Equal(reference.item<float>(), fused.item<float>(), 1e-4f);
        Assert.True(du.allclose(u.grad!, 1e-4, 1e-6), $"du max diff {du.sub(u.grad!).abs().max().item<float>()}");
        Assert.True(dv.allclose(v.grad!, 1e-4, 1e-6), $"dv max diff {dv.sub(v.grad!).abs().max().item<float>()}");
    }

    [Fact]
    public void Loss_and_gradients_do_not_depend_on_the_thread_count()
    {
        manual_seed(6);
        using var u = randn(300, 64).mul(3).requires_grad_(true);
        using var v = randn(2411, 64).requires_grad_(true); // 11 candidate blocks, the last one partial
        using var targets = randint(0, 2411, [300]);
        Gradients.AssertThreadCountIndependent(() => SoftmaxCrossEntropy.Loss(u, v, targets), [u, v]);
        var before = get_num_threads();
        try
        {
            set_num_threads(1);
            var one = SoftmaxCrossEntropy.Loss(u, v, targets).item<float>();
            set_num_threads(2);
            Assert.Equal(one, SoftmaxCrossEntropy.Loss(u, v, targets).item<float>());
        }
        finally { set_num_threads(before); }
    }

    [Fact]
    public void Targets_outside_the_candidates_and_mismatched_shapes_are_rejected()
    {
        using var u = randn(4, 8);
        using var v = randn(10, 8);
        Assert.Contains("outside the 10 candidates", Assert.Throws<ArgumentException>(() => SoftmaxCrossEntropy.Loss(u, v, tensor(new long[] { 0, 1, 10, 2 }))).Message);
        Assert.Throws<ArgumentException>(() => SoftmaxCrossEntropy.Loss(u, v, tensor(new long[] { -1, 1, 1, 2 })));
        Assert.Throws<ArgumentException>(() => SoftmaxCrossEntropy.Loss(u, randn(10, 7), tensor(new long[] { 0, 1, 1, 2 })));
        Assert.Throws<ArgumentException>(() => SoftmaxCrossEntropy.Loss(u, v, tensor(new long[] { 0, 1 })));
    }
}
