using static TorchSharp.torch;

namespace LSVCR.Modeling;

/// <summary>Additive attention masks (0 = visible, −1e6 = hidden); pad id 0. On the ids' device, float32 (the
/// attention casts them to its own dtype).</summary>
internal static class Masks
{
    public const float Hidden = -1e6f;

    /// <summary>[B, 1, 1, L]: key j visible iff not pad.</summary>
    public static Tensor Bidirectional(Tensor ids)
    {
        using var scope = NewDisposeScope();
        return ids.ne(0).to(ScalarType.Float32).sub_(1f).mul_(-Hidden).unsqueeze(1).unsqueeze(2).MoveToOuterDisposeScope();
    }

    /// <summary>[B, 1, L, L]: key j visible to query i iff j ≤ i and j not pad.</summary>
    public static Tensor Causal(Tensor ids)
    {
        using var scope = NewDisposeScope();
        var l = ids.shape[1];
        var lower = ones(l, l, dtype: ScalarType.Bool, device: ids.device).tril();
        var visible = ids.ne(0).unsqueeze(1).unsqueeze(2).logical_and(lower);
        return visible.to(ScalarType.Float32).sub_(1f).mul_(-Hidden).MoveToOuterDisposeScope();
    }
}
