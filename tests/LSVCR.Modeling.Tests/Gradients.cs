using LSVCR.Modeling.Cpu;
using static TorchSharp.torch;

namespace LSVCR.Modeling.Tests;

/// <summary>Gradient helpers shared by the fused-node tests.</summary>
internal static class Gradients
{
    /// <summary>Runs <paramref name="loss"/> on <paramref name="threads"/> libtorch threads after manual_seed(9),
    /// backpropagates and returns copies of the gradients of <paramref name="inputs"/> (then zeroed).</summary>
    public static Tensor[] With(int threads, Func<Tensor> loss, Tensor[] inputs)
    {
        var before = get_num_threads();
        set_num_threads(threads);
        try
        {
            manual_seed(9);
            loss().backward();
            var g = inputs.Select(t => t.grad!.clone()).ToArray();
            foreach (var t in inputs) t.grad!.zero_();
            return g;
        }
        finally { set_num_threads(before); }
    }

    /// <summary>Asserts that one and two threads give bit-identical gradients.</summary>
    public static void AssertThreadCountIndependent(Func<Tensor> loss, Tensor[] inputs)
    {
        var one = With(1, loss, inputs);
        var two = With(2, loss, inputs);
        for (var i = 0; i < inputs.Length; i++) Assert.True(one[i].equal(two[i]).all().item<bool>(), $"gradient {i}");
    }
}
