using LSVCR.Data;
using LSVCR.Modeling;
using static TorchSharp.torch;

namespace LSVCR.Alignment;

/// <summary>
/// The forward pass of one stage-1 batch (MODEL.md §3) up to the loss terms: every distinct item text of the batch
/// encoded once by the LLM (<see cref="ItemEncoder"/>), the SR model in its stage-1 form on those embeddings, the
/// prompts through the LLM for the user vector (and, for decoders, the lm loss on the response).
/// </summary>
public sealed class Stage1Step(Catalog catalog, TextBackbone backbone, AlignmentHeads heads, RecCom sr, PromptBuilder prompts,
    ItemEncoder items, Device device)
{
    /// <summary>(rows, width) of every prompt forward, for FLOP counting; null = not recorded.</summary>
    public List<(int Rows, int Width)>? PromptShapes { get; set; }

    public AlignmentLossTerms Forward(IReadOnlyList<Stage1Example> batch, Generator positions)
    {
        int b = batch.Count;
        // Distinct texts → row (row 0 = "no text", a zero embedding like the pad rows of the .npy tables).
        var textRow = new Dictionary<string, int>();
        var texts = new List<string>();
        int Row(string text)
        {
            if (!textRow.TryGetValue(text, out var r)) { textRow[text] = r = texts.Count + 1; texts.Add(text); }
            return r;
        }
        int Title(int photo) => photo == 0 ? 0 : Row(catalog.PhotoTitles[photo]);
        int Comment(int comment) => comment == 0 ? 0 : Row(catalog.CommentTexts[comment]);

        int lp = Math.Max(1, batch.Max(e => e.Videos.Length));
        int lc = Math.Max(1, batch.Max(e => e.Comments.Length));
        int k = Math.Max(1, batch.Max(e => e.Comments.Select(c => c.Comments.Length).DefaultIfEmpty(0).Max()));
        var pIds = new long[b * lp]; var pTitle = new long[b * lp]; var pComment = new long[b * lp];
        var cIds = new long[b * lc]; var cTitle = new long[b * lc]; var cComments = new long[b * lc * k];
        var watched = new long[b]; var target = new long[b]; var isRec = new bool[b];
        for (int i = 0; i < b; i++)
        {
            var ex = batch[i];
            for (int j = 0; j < ex.Videos.Length; j++)
            {
                pIds[i * lp + j] = ex.Videos[j].Photo;
                pTitle[i * lp + j] = Title(ex.Videos[j].Photo);
                pComment[i * lp + j] = Comment(ex.Videos[j].Comment);
            }
            for (int j = 0; j < ex.Comments.Length; j++)
            {
                cIds[i * lc + j] = ex.Comments[j].Photo;
                cTitle[i * lc + j] = Title(ex.Comments[j].Photo);
                for (int m = 0; m < ex.Comments[j].Comments.Length; m++) cComments[(i * lc + j) * k + m] = Comment(ex.Comments[j].Comments[m]);
            }
            isRec[i] = ex.Task == TaskKind.Rec;
            watched[i] = isRec[i] ? 0 : Title(ex.TargetPhoto);
            target[i] = isRec[i] ? Title(ex.TargetPhoto) : Comment(ex.ResponseComment);
        }

        var encoded = items.Encode(texts);
        var table = cat([zeros(1, encoded.shape[1], device: encoded.device), encoded], 0);
        Tensor Gather(long[] rows, params long[] shape) => table.index_select(0, tensor(rows).to(device)).view([.. shape, table.shape[1]]);
        var commentRows = tensor(cComments).to(device);
        var commentSum = Gather(cComments, b, lc, k).sum(2);
        var commentCount = commentRows.view(b, lc, k).ne(0).sum(2, keepdim: true).clamp_min(1).to(ScalarType.Float32);

        var srBatch = new Stage1Batch(
            tensor(pIds, b, lp), Gather(pTitle, b, lp), Gather(pComment, b, lp),
            tensor(cIds, b, lc), Gather(cTitle, b, lc), commentSum.div(commentCount),
            Gather(watched, b), tensor(isRec), RecCom.RandomPositions(lp, sr.Config.MaxPosition, positions),
            RecCom.RandomPositions(lc, sr.Config.MaxPosition, positions));
        var users = sr.EncodeStage1(srBatch);
        var targetVector = nn.functional.normalize(sr.AdaptText(Gather(target, b)), dim: -1);

        // Prompts: right-padded; the user vector is the hidden state at the last prompt token.
        var built = batch.Select(prompts.Build).ToArray();
        int width = built.Max(p => p.Ids.Length);
        var ids = new long[b * width]; var mask = new long[b * width]; var response = new long[b * width]; var last = new long[b];
        for (int i = 0; i < b; i++)
        {
            Array.Fill(ids, backbone.Tokenizer.PadId, i * width, width);
            for (int j = 0; j < built[i].Ids.Length; j++)
            {
                ids[i * width + j] = built[i].Ids[j];
                mask[i * width + j] = 1;
                response[i * width + j] = built[i].Response[j] ? 1 : 0;
            }
            last[i] = i * width + built[i].LastPromptToken;
        }
        PromptShapes?.Add((b, width));
        var idsT = tensor(ids, b, width).to(device);
        var hidden = backbone.forward(idsT, tensor(mask, b, width).to(device));
        var lastStates = hidden.reshape(b * width, -1).index_select(0, tensor(last).to(device)).to(ScalarType.Float32);
        var llmUser = heads.UserVector(lastStates);
        Tensor? lm = backbone.HasLmHead ? AlignmentLosses.Lm(backbone.LmLogits(hidden), idsT, tensor(response, b, width).to(device)) : null;
        return AlignmentLosses.Combine(lm, llmUser, users.Primary, users.Other, targetVector, sr.Config.Temperature);
    }
}
