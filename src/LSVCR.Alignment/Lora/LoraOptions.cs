namespace LSVCR.Alignment.Lora;

/// <summary>
/// Low-rank adaptation of a backbone's projections: y = x·Wᵀ + b + (α/r)·B(A(dropout(x))), W frozen, A and B trained
/// (A ~ Kaiming-uniform, B = 0, so training starts from the pretrained function). Reference (MODEL.md §3): r = 8,
/// α = 32, dropout 0.1 on the attention and MLP projections.
/// </summary>
public sealed record LoraOptions
{
    public int Rank { get; init; } = 8;
    public double Alpha { get; init; } = 32;
    public double Dropout { get; init; } = 0.1;
    /// <summary>Projection names (the backbone's own, e.g. <c>query</c>, <c>q_proj</c>); null = every attention and MLP projection.</summary>
    public IReadOnlyList<string>? Targets { get; init; }

    public double Scaling => Alpha / Rank;

    public void Validate()
    {
        if (Rank < 1) throw new LsvcrException($"lora-rank must be at least 1, got {Rank}", ErrorKind.BadInput);
        if (Alpha <= 0) throw new LsvcrException($"lora-alpha must be positive, got {Alpha}", ErrorKind.BadInput);
        if (Dropout is < 0 or >= 1) throw new LsvcrException($"lora-dropout must be in [0, 1), got {Dropout}", ErrorKind.BadInput);
    }
}
