using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LSVCR.Alignment;

/// <summary>
/// The stage-1 heads on the LLM (MODEL.md §3): <c>llm_emb_mlp</c> (Linear H→H/4, GELU, Linear H/4→E) turns mean-pooled
/// item hidden states into the E-wide text embeddings the SR model reads; <c>contrast_adapter</c> (Linear H→d) turns
/// the last prompt token's hidden state into the LLM user vector.
/// </summary>
public sealed class AlignmentHeads : nn.Module
{
#pragma warning disable IDE1006 // reference parameter names
    private readonly Sequential llm_emb_mlp;
    private readonly Linear contrast_adapter;
#pragma warning restore IDE1006

    public AlignmentHeads(int llmHidden, int textDim, int srHidden) : base("heads")
    {
        llm_emb_mlp = nn.Sequential(nn.Linear(llmHidden, llmHidden / 4), nn.GELU(), nn.Linear(llmHidden / 4, textDim));
        contrast_adapter = nn.Linear(llmHidden, srHidden);
        RegisterComponents();
        using var _ = no_grad();
        foreach (var (name, p) in named_parameters())
            if (name.EndsWith("weight")) nn.init.normal_(p, 0, 0.02);
            else nn.init.zeros_(p);
    }

    /// <summary>[N, H] pooled item states → [N, E].</summary>
    public Tensor ItemEmbedding(Tensor pooled) => llm_emb_mlp.forward(pooled);

    /// <summary>[B, H] last-prompt-token states → normalised [B, d].</summary>
    public Tensor UserVector(Tensor last) => F.normalize(contrast_adapter.forward(last), dim: -1);
}
