using LSVCR.Modeling.Cpu;
using System.Runtime.Intrinsics;
using static TorchSharp.torch;

namespace LSVCR.Modeling.Tests;

[Trait("Category", "Kernels")]
public unsafe class CpuKernelsTests
{
    /// <summary>Every tile path (6×64, 4×64, 8×32, 8×16), their row remainders and the narrow-column fallback, with A
    /// read row-major and transposed (by strides), B/C rows wider than the product, overwriting and accumulating C.</summary>
    [Theory]
    [InlineData(1, 1, 1)]
    [InlineData(3, 5, 7)]
    [InlineData(4, 64, 32)]
    [InlineData(9, 64, 50)]
    [InlineData(8, 32, 50)]
    [InlineData(13, 48, 3)]
    [InlineData(50, 112, 64)]
    [InlineData(17, 70, 19)]
    [InlineData(11, 64, 20)]  // one 6-row tile, one 4-row tile, one remainder row
    [InlineData(16, 128, 9)]  // two 6-row tiles and a 4-row tile per panel
    [InlineData(50, 32, 50)]  // six 8-row tiles and two remainder rows: an attention head
    [InlineData(21, 32, 8)]   // two 8-row tiles, five remainder rows
    public void Gemm_matches_matmul_for_row_major_and_transposed_A(int rows, int cols, int depth)
    {
        manual_seed(rows * 1000 + cols * 10 + depth);
        using var a = randn(rows, depth + 3);          // A = a[:, :depth], row stride depth + 3
        using var at = randn(depth, rows + 5);         // Aᵀ stored: A[m, k] = at[k, m]
        using var b = randn(depth, cols + 9);          // B = b[:, :cols]
        using var c = full(rows, cols + 2, float.NaN); // C rows wider than cols: the extra columns must stay untouched
        using var expected = a.narrow(1, 0, depth).matmul(b.narrow(1, 0, cols));
        using var expectedT = at.narrow(1, 0, rows).t().matmul(b.narrow(1, 0, cols));

        CpuKernels.Gemm(CpuKernels.Ptr(a), depth + 3, 1, CpuKernels.Ptr(b), cols + 9, CpuKernels.Ptr(c), cols + 2, rows, cols, depth);
        Assert.True(c.narrow(1, 0, cols).allclose(expected, 1e-4, 1e-4), $"max diff {c.narrow(1, 0, cols).sub(expected).abs().max().item<float>()}");
        Assert.True(c.narrow(1, cols, 2).isnan().all().item<bool>());

        CpuKernels.Gemm(CpuKernels.Ptr(at), 1, rows + 5, CpuKernels.Ptr(b), cols + 9, CpuKernels.Ptr(c), cols + 2, rows, cols, depth);
        Assert.True(c.narrow(1, 0, cols).allclose(expectedT, 1e-4, 1e-4), $"max diff {c.narrow(1, 0, cols).sub(expectedT).abs().max().item<float>()}");

        // Accumulating: C = Aᵀ-product from above, += the row-major product.
        CpuKernels.Gemm(CpuKernels.Ptr(a), depth + 3, 1, CpuKernels.Ptr(b), cols + 9, CpuKernels.Ptr(c), cols + 2, rows, cols, depth, accumulate: true);
        using var sum = expected.add(expectedT);
        Assert.True(c.narrow(1, 0, cols).allclose(sum, 1e-4, 1e-4), $"accumulate max diff {c.narrow(1, 0, cols).sub(sum).abs().max().item<float>()}");
        Assert.True(c.narrow(1, cols, 2).isnan().all().item<bool>());

        // B as packed panels gives the same product.
        using var packed = full(CpuKernels.PackedSize(depth, cols), float.NaN);
        CpuKernels.Pack(CpuKernels.Ptr(b), cols + 9, depth, cols, CpuKernels.Ptr(packed));
        CpuKernels.GemmPacked(CpuKernels.Ptr(a), depth + 3, 1, CpuKernels.Ptr(packed), depth, CpuKernels.Ptr(c), cols + 2, rows, cols, depth);
        Assert.True(c.narrow(1, 0, cols).allclose(expected, 1e-4, 1e-4), $"packed max diff {c.narrow(1, 0, cols).sub(expected).abs().max().item<float>()}");
        Assert.False(packed.isnan().any().item<bool>()); // the last panel's padding is zeroed

        // With a bias row: exactly the product rounded, then + bias rounded (what filling C with the bias and
        // accumulating gave), through Gemm and GemmPacked.
        using var bias = randn(cols);
        using var product = full(rows, cols + 2, float.NaN);
        CpuKernels.Gemm(CpuKernels.Ptr(a), depth + 3, 1, CpuKernels.Ptr(b), cols + 9, CpuKernels.Ptr(product), cols + 2, rows, cols, depth);
        using var withBias = product.narrow(1, 0, cols).add(bias);
        CpuKernels.Gemm(CpuKernels.Ptr(a), depth + 3, 1, CpuKernels.Ptr(b), cols + 9, CpuKernels.Ptr(c), cols + 2, rows, cols, depth, bias: CpuKernels.Ptr(bias));
        Assert.True(c.narrow(1, 0, cols).eq(withBias).all().item<bool>(), $"bias max diff {c.narrow(1, 0, cols).sub(withBias).abs().max().item<float>()}");
        Assert.True(c.narrow(1, cols, 2).isnan().all().item<bool>());
        c.fill_(float.NaN);
        CpuKernels.GemmPacked(CpuKernels.Ptr(a), depth + 3, 1, CpuKernels.Ptr(packed), depth, CpuKernels.Ptr(c), cols + 2, rows, cols, depth, bias: CpuKernels.Ptr(bias));
        Assert.True(c.narrow(1, 0, cols).eq(withBias).all().item<bool>(), "packed with bias");
        Assert.True(c.narrow(1, cols, 2).isnan().all().item<bool>());
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(16)]
    [InlineData(50)]  // an attention row: three vectors and a masked tail
    [InlineData(100)]
    public void Multiply_is_the_elementwise_product_and_writes_nothing_past_n(int n)
    {
        manual_seed(n);
        using var x = randn(n + 20);
        using var y = randn(n + 20);
        using var dst = full(n + 20, float.NaN);
        CpuKernels.Multiply(CpuKernels.Ptr(x), CpuKernels.Ptr(y), CpuKernels.Ptr(dst), n);
        Assert.True(dst.narrow(0, 0, n).eq(x.narrow(0, 0, n).mul(y.narrow(0, 0, n))).all().item<bool>());
        Assert.True(dst.narrow(0, n, 20).isnan().all().item<bool>());
    }

    [Fact]
    public void Gemm_refuses_a_bias_when_accumulating()
    {
        using var m = ones(2, 2);
        var error = Assert.Throws<ArgumentException>(() =>
            CpuKernels.Gemm(CpuKernels.Ptr(m), 2, 1, CpuKernels.Ptr(m), 2, CpuKernels.Ptr(m), 2, 2, 2, 2, accumulate: true, bias: CpuKernels.Ptr(m)));
        Assert.Contains("bias", error.Message);
    }

    [Theory]
    [InlineData(5, 3)]    // scalar only
    [InlineData(16, 32)]  // whole gathers
    [InlineData(21, 7)]   // gathers and a scalar tail
    [InlineData(37, 48)]  // 16 × 16 register transposes, then gathers and a scalar tail
    public void GatherColumns_transposes_the_listed_rows(int n, int cols)
    {
        manual_seed(n);
        using var src = randn(12, cols);
        var rows = Enumerable.Range(0, n).Select(j => (j * 7 + 3) % 12).ToArray(); // unordered, repeated
        using var expected = src.index_select(0, tensor(rows.Select(x => (long)x).ToArray())).t();
        using var dst = zeros(cols, n + 4);
        var offsets = rows.Select(r => r * cols).ToArray();
        fixed (int* o = offsets) CpuKernels.GatherColumns(CpuKernels.Ptr(src), o, n, cols, CpuKernels.Ptr(dst), n + 4);
        Assert.True(dst.narrow(1, 0, n).eq(expected).all().item<bool>());
        Assert.Equal(0f, dst.narrow(1, n, 4).abs().sum().item<float>());
    }

    [Fact]
    public void Exp_is_accurate_over_the_normal_range_and_exactly_zero_below_it()
    {
        var worst = 0.0;
        for (var i = 0; i <= 20000; i++)
        {
            var x = -87.3f + i * (88.3f + 87.3f) / 20000;
            var got = CpuKernels.Exp(Vector512.Create(x)).ToScalar();
            worst = Math.Max(worst, Math.Abs(got - Math.Exp(x)) / Math.Exp(x));
        }
        Assert.InRange(worst, 0, 3e-7);
        // Masked scores (−1e6), −∞ and anything whose exp is not a normal float give exactly 0, never a denormal.
        foreach (var x in new[] { -87.5f, -100f, -1e6f, float.NegativeInfinity })
            Assert.Equal(0f, CpuKernels.Exp(Vector512.Create(x)).ToScalar());
        Assert.Equal(1f, CpuKernels.Exp(Vector512<float>.Zero).ToScalar());
    }

    [Fact]
    public void HorizontalMax_finds_the_largest_lane_wherever_it_is()
    {
        for (var lane = 0; lane < Vector512<float>.Count; lane++)
        {
            var values = Enumerable.Range(0, 16).Select(i => -100f + i).ToArray();
            values[lane] = 7.5f;
            Assert.Equal(7.5f, CpuKernels.HorizontalMax(Vector512.Create(values)));
        }
        Assert.Equal(float.NegativeInfinity, CpuKernels.HorizontalMax(Vector512.Create(float.NegativeInfinity)));
    }
}
