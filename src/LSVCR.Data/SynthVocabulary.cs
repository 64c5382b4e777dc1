namespace LSVCR.Data;

/// <summary>
/// Word lists of the synthetic generator: per-topic vocabularies for titles and comments, and per-style comment
/// templates. Plain English so a sentence encoder (MiniLM) places same-topic and same-style texts near each other.
/// </summary>
internal static class SynthVocabulary
{
    internal sealed record Topic(string Name, string[] Nouns, string[] Adjectives, string[] Gerunds);

    public static readonly Topic[] Topics =
    [
        new("cooking", ["pasta", "garlic bread", "curry", "pancakes", "ramen", "steak", "sourdough", "dumplings", "salad", "lasagna"],
            ["crispy", "spicy", "creamy", "homemade", "juicy", "cheesy"], ["baking", "grilling", "frying", "cooking"]),
        new("football", ["goal", "penalty", "striker", "free kick", "goalkeeper", "derby", "midfield", "header", "match", "stadium"],
            ["last-minute", "stunning", "controversial", "legendary", "brutal", "clean"], ["dribbling", "shooting", "defending", "scoring"]),
        new("cats", ["kitten", "cat", "tabby", "cat tree", "litter box", "purring", "whiskers", "paw", "laser pointer", "catnip"],
            ["fluffy", "sleepy", "grumpy", "curious", "tiny", "chonky"], ["napping", "pouncing", "meowing", "grooming"]),
        new("travel", ["beach", "mountain village", "airport", "road trip", "hostel", "island", "old town", "night market", "train ride", "waterfall"],
            ["hidden", "budget", "breathtaking", "remote", "sunny", "crowded"], ["backpacking", "hiking", "exploring", "sightseeing"]),
        new("gaming", ["boss fight", "speedrun", "controller", "open world", "loot", "multiplayer match", "headshot", "level", "console", "raid"],
            ["impossible", "glitchy", "competitive", "retro", "ranked", "epic"], ["streaming", "grinding", "respawning", "leveling"]),
        new("music", ["guitar riff", "piano cover", "drum solo", "concert", "chorus", "violin", "album", "beat", "melody", "bass line"],
            ["acoustic", "catchy", "live", "haunting", "upbeat", "classical"], ["singing", "drumming", "composing", "jamming"]),
        new("fitness", ["squat", "push-up", "deadlift", "treadmill", "abs workout", "protein shake", "marathon", "gym", "plank", "kettlebell"],
            ["intense", "daily", "beginner", "sweaty", "heavy", "quick"], ["lifting", "running", "stretching", "training"]),
        new("cars", ["engine", "sports car", "drift", "tire", "turbo", "pickup truck", "race track", "exhaust", "gearbox", "convertible"],
            ["vintage", "electric", "loud", "restored", "fast", "modified"], ["racing", "drifting", "detailing", "tuning"]),
        new("tech", ["smartphone", "laptop", "gadget", "keyboard", "headphones", "smartwatch", "camera", "battery", "charger", "tablet"],
            ["new", "cheap", "wireless", "foldable", "overpriced", "tiny"], ["unboxing", "reviewing", "coding", "repairing"]),
        new("fashion", ["outfit", "sneakers", "dress", "jacket", "handbag", "jeans", "runway", "scarf", "boots", "hoodie"],
            ["stylish", "oversized", "elegant", "thrifted", "vintage", "colorful"], ["styling", "thrifting", "shopping", "sewing"]),
        new("gardening", ["tomato plant", "rose bush", "seedling", "compost", "greenhouse", "sunflower", "herb garden", "soil", "cactus", "orchid"],
            ["organic", "blooming", "tiny", "overgrown", "lush", "thirsty"], ["planting", "pruning", "watering", "harvesting"]),
        new("fishing", ["trout", "fishing rod", "bait", "lake", "bass", "catfish", "boat", "lure", "river", "tackle box"],
            ["huge", "early-morning", "frozen", "calm", "record", "wild"], ["casting", "reeling", "fishing", "camping"]),
        new("movies", ["trailer", "plot twist", "director", "sequel", "villain", "soundtrack", "horror film", "cinema", "scene", "actor"],
            ["underrated", "terrifying", "classic", "animated", "dramatic", "hilarious"], ["reviewing", "filming", "acting", "editing"]),
        new("dance", ["choreography", "hip hop routine", "ballet", "dance battle", "salsa", "tap shoes", "spin", "dance floor", "breakdance", "tango"],
            ["smooth", "viral", "graceful", "energetic", "synchronized", "freestyle"], ["dancing", "practicing", "spinning", "popping"]),
        new("science", ["experiment", "volcano", "telescope", "chemistry set", "robot", "magnet", "rocket", "microscope", "planet", "dinosaur fossil"],
            ["explosive", "mind-blowing", "simple", "glowing", "ancient", "tiny"], ["testing", "measuring", "launching", "discovering"]),
        new("pets", ["puppy", "golden retriever", "parrot", "hamster", "rabbit", "dog park", "leash", "chew toy", "turtle", "goldfish"],
            ["playful", "adorable", "loyal", "clumsy", "excited", "smart"], ["fetching", "barking", "cuddling", "walking"]),
    ];

    /// <summary>Title templates: {a} adjective, {n} and {m} nouns, {g} gerund.</summary>
    public static readonly string[] TitleTemplates =
    [
        "{A} {n} you need to see",
        "How I started {g} with a {a} {n}",
        "My first {a} {n}",
        "Trying the {a} {n} everyone talks about",
        "{N} vs {m}: which one wins?",
        "Day 30 of {g}: the {n} update",
        "{A} {n} and {m} tips for beginners",
        "Why this {n} changed my {g}",
        "The most {a} {n} ever",
        "A weekend of {g} and {a} {m}",
    ];

    public enum Style { Supportive, Critical, Funny, Question }

    /// <summary>Comment templates per <see cref="Style"/>; {n} topic noun, {a} adjective, {g} gerund.</summary>
    public static readonly string[][] CommentTemplates =
    [
        [
            "This {n} is amazing, great job!",
            "Love how you did the {n}, keep it up",
            "Beautiful {n}, you made my day",
            "So well done, the {n} looks perfect",
            "Thank you for sharing this {a} {n}, wonderful",
            "Your {g} inspires me every day, love it",
        ],
        [
            "Honestly this {n} looks overrated",
            "Not impressed, the {n} was done wrong",
            "Too much hype for a {a} {n}",
            "This is misleading, {g} never works like that",
            "Worst {n} video I have seen this week",
            "Disappointing, the {n} is clearly fake",
        ],
        [
            "My {n} tried this and now it is famous lol",
            "Me pretending to understand {g} 😂",
            "When the {n} has more talent than me haha",
            "Plot twist: the {n} was the real star lmao",
            "I laughed way too hard at the {a} {n} 🤣",
            "Nobody: me at 3am watching {g} videos lol",
        ],
        [
            "Where did you get that {n}?",
            "How long did the {n} take?",
            "Can you explain the {g} part again?",
            "What brand is the {a} {n}?",
            "Does this work for a {n} too?",
            "Any tips for {g} as a beginner?",
        ],
    ];
}
