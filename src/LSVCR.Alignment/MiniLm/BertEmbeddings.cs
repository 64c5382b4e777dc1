using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LSVCR.Alignment.MiniLm;

/// <summary>BERT input embeddings: word + position + token type (all type 0 here), LayerNorm, dropout.</summary>
internal sealed class BertEmbeddings : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006 // Hugging Face parameter names
    private readonly Embedding word_embeddings;
    private readonly Embedding position_embeddings;
    private readonly Embedding token_type_embeddings;
    private readonly LayerNorm LayerNorm;
#pragma warning restore IDE1006
    private readonly double _dropout;

    public BertEmbeddings(BertConfig c) : base("embeddings")
    {
        word_embeddings = nn.Embedding(c.VocabSize, c.Hidden);
        position_embeddings = nn.Embedding(c.MaxPositions, c.Hidden);
        token_type_embeddings = nn.Embedding(c.TypeVocabSize, c.Hidden);
        LayerNorm = nn.LayerNorm(c.Hidden, c.LayerNormEps);
        _dropout = c.HiddenDropout;
        RegisterComponents();
    }

    /// <param name="ids">[B, T] int64</param>
    public override Tensor forward(Tensor ids)
    {
        using var scope = NewDisposeScope();
        var t = ids.shape[1];
        var x = word_embeddings.forward(ids)
            .add(position_embeddings.weight!.narrow(0, 0, t).unsqueeze(0))
            .add(token_type_embeddings.weight!.narrow(0, 0, 1));
        return F.dropout(LayerNorm.forward(x), _dropout, training).MoveToOuterDisposeScope();
    }
}
