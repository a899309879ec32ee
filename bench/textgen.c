/* Deterministic text-like data for the large-document benchmarks: lines of words drawn with a
 * skewed (Zipf-like) frequency from a fixed vocabulary, a quarter of them from a pool of reused
 * phrases, with numbers, amounts, dates and punctuation mixed in, so that gzip -6 compresses it
 * about 3.5x (zstd -3 alike), as it does real prose and logs. Zeros or one repeated block would
 * compress far better and make every compressor look fast.
 *
 *   textgen SEED BYTES > FILE      (writes exactly BYTES bytes to stdout; a different SEED gives
 *                                   different content)
 *
 * A xorshift generator and a 1 MiB buffer: 512 MiB takes a few seconds.
 * Built by scripts/bench with `cc -O2`. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char* const kWords[] = {
    "the", "of", "and", "to", "a", "in", "for", "is", "on", "that", "by", "this", "with", "you",
    "it", "not", "or", "be", "are", "from", "at", "as", "your", "all", "have", "new", "more", "an",
    "was", "we", "will", "can", "about", "if", "page", "my", "has", "free", "but", "our", "one",
    "other", "do", "no", "information", "time", "they", "site", "he", "up", "may", "what", "which",
    "their", "news", "out", "use", "any", "there", "see", "only", "so", "his", "when", "contact",
    "here", "business", "who", "web", "also", "now", "help", "get", "view", "online", "first",
    "been", "would", "how", "were", "me", "services", "some", "these", "click", "its", "like",
    "service", "than", "find", "price", "date", "back", "top", "people", "had", "list", "name",
    "just", "over", "state", "year", "day", "into", "email", "two", "health", "world", "next",
    "used", "go", "work", "last", "most", "products", "music", "buy", "data", "make", "them",
    "should", "product", "system", "post", "her", "city", "add", "policy", "number", "such",
    "please", "available", "copyright", "support", "message", "after", "best", "software", "then",
    "jan", "good", "video", "well", "where", "info", "rights", "public", "books", "high", "school",
    "through", "each", "links", "she", "review", "years", "order", "very", "privacy", "book",
    "items", "company", "read", "group", "need", "many", "user", "said", "does", "set", "under",
    "general", "research", "university", "january", "mail", "full", "map", "reviews", "program",
    "life", "know", "games", "way", "days", "management", "part", "could", "great", "united",
    "hotel", "real", "item", "international", "center", "ebay", "must", "store", "travel",
    "comments", "made", "development", "report", "off", "member", "details", "line", "terms",
    "before", "hotels", "did", "send", "right", "type", "because", "local", "those", "using",
    "results", "office", "education", "national", "car", "design", "take", "posted", "internet",
    "address", "community", "within", "states", "area", "want", "phone", "shipping", "reserved",
    "subject", "between", "forum", "family", "long", "based", "code", "show", "even", "black",
    "check", "special", "prices", "website", "index", "being", "women", "much", "sign", "file",
    "link", "open", "today", "technology", "south", "case", "project", "same", "pages", "version",
    "section", "own", "found", "sports", "house", "related", "security", "both", "county",
    "american", "photo", "game", "members", "power", "while", "care", "network", "down",
    "computer", "systems", "three", "total", "place", "end", "following", "download", "him",
    "without", "per", "access", "think", "north", "resources", "current", "posts", "big", "media",
    "law", "control", "water", "history", "pictures", "size", "art", "personal", "since",
    "including", "guide", "shop", "directory", "board", "location", "change", "white", "text",
    "small", "rating", "rate", "government", "children", "during", "usa", "return", "students",
    "shopping", "account", "times", "sites", "level", "digital", "profile", "previous", "form",
    "events", "love", "old", "john", "main", "call", "hours", "image", "department", "title",
    "description", "non", "insurance", "another", "why", "shall", "property", "class", "still",
    "money", "quality", "every", "listing", "content", "country", "private", "little", "visit",
    "save", "tools", "low", "reply", "customer", "december", "compare", "movies", "include",
    "college", "value", "article", "york", "man", "card", "jobs", "provide", "food", "source",
    "author", "different", "press", "learn", "sale", "around", "print", "course", "job", "canada",
    "process", "teen", "room", "stock", "training", "too", "credit", "point", "join", "science",
    "men", "categories", "advanced", "west", "sales", "look", "english", "left", "team", "estate",
    "box", "conditions", "select", "windows", "photos", "gay", "thread", "week", "category",
    "note", "live", "large", "gallery", "table", "register", "however", "june", "october",
    "november", "market", "library", "really", "action", "start", "series", "model", "features",
    "air", "industry", "plan", "human", "provided", "yes", "required", "second", "hot",
    "accessories", "cost", "movie", "forums", "march", "la", "september", "better", "say",
    "questions", "july", "yahoo", "going", "medical", "test", "friend", "come", "server", "study",
    "application", "cart", "staff", "articles", "san", "feedback", "again", "play", "looking",
    "issues", "april", "never", "users", "complete", "street", "topic", "comment", "financial",
    "things", "working", "against", "standard", "tax", "person", "below", "mobile", "less", "got",
    "blog", "party", "payment", "equipment", "login", "student", "let", "programs", "offers",
    "legal", "above", "recent", "park", "stores", "side", "act", "problem", "red", "give", "memory",
    "performance", "social", "august", "quote", "language", "story", "sell", "options",
    "experience", "rates", "create", "key", "body", "young", "america", "important", "field",
    "few", "east", "paper", "single", "age", "activities", "club", "example", "girls",
    "additional", "password", "latest", "something", "road", "gift", "question", "changes",
    "night", "hard", "texas", "oct", "pay", "four", "poker", "status", "browse", "issue", "range",
    "building", "seller", "court", "february", "always", "result", "audio", "light", "write",
    "war", "nov", "offer", "blue", "groups", "easy", "given", "files", "event", "release",
    "analysis", "request", "fax", "china", "making", "picture", "needs", "possible", "might",
    "professional", "yet", "month", "major", "star", "areas", "future", "space", "committee",
    "hand", "sun", "cards", "problems", "london", "washington", "meeting", "become", "interest",
    "id", "child", "keep", "enter", "california", "share", "similar", "garden", "schools",
    "million", "added", "reference", "companies", "listed", "baby", "learning", "energy", "run",
    "delivery", "net", "popular", "term", "film", "stories", "put", "computers", "journal",
    "reports", "try", "welcome", "central", "images", "president", "notice", "original", "head",
    "radio", "until", "cell", "color", "self", "council", "away", "includes", "track", "australia",
    "discussion", "archive", "once", "others", "entertainment", "agreement", "format", "least",
    "society", "months", "log", "safety", "friends", "sure", "faq", "trade", "edition", "cars",
    "messages", "marketing", "tell", "further", "updated", "association", "able", "having",
    "provides", "david", "fun", "already", "green", "studies", "close", "common", "drive",
    "specific", "several", "gold", "feb", "living", "sep", "collection", "called", "short",
    "arts", "lot", "ask", "display", "limited", "powered", "solutions", "means", "director",
    "daily", "beach", "past", "natural", "whether", "due", "electronics", "five", "upon",
    "period", "planning", "database", "says", "official", "weather", "mar", "land", "average",
    "done", "technical", "window", "france", "pro", "region", "island", "record", "direct",
    "microsoft", "conference", "environment", "records", "st", "district", "calendar", "costs",
    "style", "url", "front", "statement", "update", "parts", "aug", "ever", "downloads", "early",
    "miles", "sound", "resource", "present", "applications", "either", "ago", "document", "word",
    "works", "material", "bill", "apr", "written", "talk", "federal", "hosting", "rules", "final",
    "adult", "tickets", "thing", "centre", "requirements", "via", "cheap", "kids", "finance",
    "true", "minutes", "else", "mark", "third", "rock", "gifts", "europe", "reading", "topics",
    "bad", "individual", "tips", "plus", "auto", "cover", "usually", "edit", "together", "videos",
    "percent", "fast", "function", "fact", "unit", "getting", "global", "tech", "meet", "far",
    "economic", "en", "player", "projects", "lyrics", "often", "subscribe", "submit", "germany",
    "amount", "watch", "included", "feel", "though", "bank", "risk", "thanks", "everything",
    "deals", "various", "words", "linux", "jul", "production", "commercial", "james", "weight",
    "town", "heart", "advertising", "received", "choose", "treatment", "newsletter", "archives",
    "points", "knowledge", "magazine", "error", "camera", "jun", "girl", "currently",
    "construction", "toys", "registered", "clear", "golf", "receive", "domain", "methods",
    "chapter", "makes", "protection", "policies", "loan", "wide", "beauty", "manager", "india",
    "position", "taken", "sort", "listings", "models", "michael", "known", "half", "cases", "step",
    "engineering", "florida", "simple", "quick", "none", "wireless", "license", "paul", "friday",
    "lake", "whole", "annual", "published", "later", "basic", "sony", "shows", "corporate",
    "google", "church", "method", "purchase", "customers", "active", "response", "practice",
    "hardware", "figure", "materials", "fire", "holiday", "chat", "enough", "designed", "along",
    "among", "death", "writing", "speed", "html", "countries", "loss", "face", "brand", "discount",
    "higher", "effects", "created", "remember", "standards", "oil", "bit", "yellow", "political",
    "increase", "advertise", "kingdom", "base", "near", "environmental", "thought", "stuff",
    "french", "storage", "oh", "japan", "doing", "loans", "shoes", "entry", "stay", "nature",
    "orders", "availability", "africa", "summary", "turn", "mean", "growth", "notes", "agency",
    "king", "monday", "european", "activity", "copy", "although", "drug", "pics", "western",
    "income", "force", "cash", "employment", "overall", "bay", "river", "commission", "ad",
    "package", "contents", "seen", "players", "engine", "port", "album", "regional", "stop",
    "supplies", "started", "administration", "bar", "institute", "views", "plans", "double",
    "dog", "build", "screen", "exchange", "types", "soon", "sponsored", "lines", "electronic",
    "continue", "across", "benefits", "needed", "season", "apply", "someone", "held", "ny",
    "anything", "printer", "condition", "effective", "believe", "organization", "effect",
    "asked", "eur", "mind", "sunday", "selection", "casino", "pdf", "lost", "tour", "menu",
    "volume", "cross", "anyone", "mortgage", "hope", "silver", "corporation", "wish", "inside",
    "solution", "mature", "role", "rather", "weeks", "addition", "came", "supply", "nothing",
    "certain", "usr", "executive", "running", "lower", "necessary", "union", "jewelry",
    "according", "dc", "clothing", "mon", "com", "particular", "fine", "names", "robert",
    "homepage", "hour", "gas", "skills", "six", "bush", "islands", "advice", "career", "military",
    "rental", "decision", "leave", "british", "teens", "pre", "huge", "sat", "woman", "facilities",
    "zip", "bid", "kind", "sellers", "middle", "move", "cable", "opportunities", "taking",
    "values", "division", "coming", "tuesday", "object", "lesbian", "appropriate", "machine",
    "logo", "length", "actually", "nice", "score", "statistics", "client", "ok", "returns",
    "capital", "follow", "sample", "investment", "sent", "shown", "saturday", "christmas",
    "england", "culture", "band", "flash", "ms", "lead", "george", "choice", "went", "starting",
    "registration", "fri", "thursday", "courses", "consumer", "hi", "airport", "foreign",
    "artist", "outside", "furniture", "levels", "channel", "letter", "mode", "phones", "ideas",
    "wednesday", "structure", "fund", "summer", "allow", "degree", "contract", "button",
    "releases", "wed", "homes", "super", "male", "matter", "custom", "virginia", "almost", "took",
    "located", "multiple", "asian", "distribution", "editor", "inn", "industrial", "cause",
    "potential", "song", "cnet", "ltd", "los", "hp", "focus", "late", "fall", "featured", "idea",
    "rooms", "female", "responsible", "inc", "communications", "win", "associated", "thomas",
    "primary", "cancer", "numbers", "reason", "tool", "browser", "spring", "foundation", "answer",
    "voice", "eg", "friendly", "schedule", "documents", "communication", "purpose", "feature",
    "bed", "comes", "police", "everyone", "independent", "ip", "approach", "cameras", "brown",
    "physical", "operating", "hill", "maps", "medicine", "deal", "hold", "ratings", "chicago",
    "forms", "glass", "happy", "tue", "smith", "wanted", "developed", "thank", "safe", "unique",
    "survey", "prior", "telephone", "sport", "ready", "feed", "animal", "sources", "mexico",
    "population", "pa", "regular", "secure", "navigation", "operations", "therefore", "simply",
    "evidence", "station", "christian", "round", "paypal", "favorite", "understand", "option",
    "master", "valley", "recently", "probably", "thu", "rentals", "sea", "built", "publications",
    "blood", "cut", "worldwide", "improve", "connection", "publisher", "hall", "larger", "anti",
    "networks", "earth", "parents", "nokia", "impact", "transfer", "introduction", "kitchen",
    "strong", "tel", "carolina", "wedding", "properties", "hospital", "ground", "overview", "ship",
    "accommodation", "owners", "disease", "tx", "excellent", "paid", "italy", "perfect", "hair",
    "opportunity", "kit", "classic", "basis", "command", "cities", "william", "express", "award",
    "distance", "tree", "peter", "assessment", "ensure", "thus", "wall", "ie", "involved", "el",
    "extra", "especially", "interface", "partners", "budget", "rated", "guides", "success",
    "maximum", "ma", "operation", "existing", "quite", "selected", "boy", "amazon", "patients",
    "restaurants", "beautiful", "warning", "wine", "locations", "horse", "vote", "forward",
    "flowers", "stars", "significant", "lists", "technologies", "owner", "retail", "animals",
    "useful", "directly", "manufacturer", "ways", "est", "son", "providing", "rule", "mac",
    "housing", "takes", "iii", "gmt", "bring", "catalog", "searches", "max", "trying", "mother",
    "authority", "considered", "told", "xml", "traffic", "programme", "joined", "input",
    "strategy", "feet", "agent", "valid", "bin", "modern", "senior", "ireland", "teaching",
    "door", "grand", "testing", "trial", "charge", "units", "instead", "canadian", "cool",
    "normal", "wrote", "enterprise", "ships", "entire", "educational", "md", "leading", "metal",
    "positive", "fl", "fitness", "chinese", "opinion", "mb", "asia", "football", "abstract",
    "uses", "output", "funds", "mr", "greater", "likely", "develop", "employees", "artists",
    "alternative", "processing", "responsibility", "resolution", "java", "guest", "seems",
    "publication", "pass", "relations", "trust", "van", "contains", "session", "multi",
    "photography", "republic", "fees", "components", "vacation", "century", "academic",
    "assistance", "completed", "skin", "graphics", "indian", "prev", "ads", "mary", "il",
    "expected", "ring", "grade", "dating", "pacific", "mountain", "organizations", "pop", "filter",
    "mailing", "vehicle", "longer", "consider", "int", "northern", "behind", "panel", "floor",
    "german", "buying", "match", "proposed", "default", "require", "iraq", "boys", "outdoor",
    "deep", "morning", "otherwise", "allows", "rest", "protein", "plant", "reported", "hit",
    "transportation", "mm", "pool", "mini", "politics", "partner", "disclaimer", "authors",
    "boards", "faculty", "parties", "fish", "membership", "mission", "eye", "string", "sense",
    "modified", "pack", "released", "stage", "internal", "goods", "recommended", "born"};
enum { kWordCount = sizeof kWords / sizeof kWords[0] };

static uint64_t state;
static uint64_t next_random(void) {  /* xorshift64* */
  state ^= state >> 12;
  state ^= state << 25;
  state ^= state >> 27;
  return state * 0x2545F4914F6CDD1DULL;
}

/* An index skewed towards the start of the list (roughly Zipf): frequent words recur often. */
static size_t skewed(size_t n) {
  uint64_t r = next_random();
  size_t a = (size_t)((r & 0xFFFFF) % n), b = (size_t)(((r >> 20) & 0xFFFFF) % n);
  size_t c = (size_t)((r >> 40) % n);
  a = a < b ? a : b;
  return a < c ? a : c;
}

/* Phrases: word sequences made once and reused, as prose and logs repeat their turns of phrase;
 * gzip finds them within its 32 KiB window. */
enum { kPhrases = 512, kPhraseMax = 96 };
static char phrases[kPhrases][kPhraseMax];
static size_t phrase_len[kPhrases];

static void make_phrases(void) {
  for (size_t i = 0; i < kPhrases; ++i) {
    size_t words = 2 + next_random() % 5, len = 0;
    for (size_t w = 0; w < words; ++w) {
      const char* word = kWords[skewed(kWordCount)];
      size_t n = strlen(word);
      if (len + n + 1 >= kPhraseMax) break;
      if (w > 0) phrases[i][len++] = ' ';
      memcpy(phrases[i] + len, word, n);
      len += n;
    }
    phrase_len[i] = len;
  }
}

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: textgen SEED BYTES > FILE\n");
    return 2;
  }
  state = strtoull(argv[1], NULL, 10) * 0x9E3779B97F4A7C15ULL + 0x1234567ULL;
  if (state == 0) state = 1;
  make_phrases();
  unsigned long long left = strtoull(argv[2], NULL, 10);
  enum { kBuf = 1 << 20, kSlack = 256 };
  static char buf[kBuf + kSlack];
  size_t used = 0;
  int in_line = 0;
  while (left > 0) {
    char* p = buf + used;
    uint64_t roll = next_random() % 100;
    if (in_line >= 8 && roll < 12) {  /* end of line */
      p += sprintf(p, roll < 2 ? ".\n\n" : roll < 8 ? ".\n" : "\n");
      in_line = 0;
    } else {
      if (in_line > 0) {
        if (roll >= 97) *p++ = ',';
        *p++ = ' ';
      }
      uint64_t kind = next_random() % 100;
      if (kind < 25) {
        size_t i = skewed(kPhrases);
        memcpy(p, phrases[i], phrase_len[i]);
        if (in_line == 0) *p = (char)(*p - 'a' + 'A');
        p += phrase_len[i];
      } else if (kind < 90) {
        const char* w = kWords[skewed(kWordCount)];
        size_t len = strlen(w);
        memcpy(p, w, len);
        if (in_line == 0) *p = (char)(*p - 'a' + 'A');
        p += len;
      } else if (kind < 95) {
        p += sprintf(p, "%llu", (unsigned long long)(next_random() % 10000));
      } else if (kind < 98) {
        uint64_t r = next_random();
        p += sprintf(p, "%llu.%02llu", (unsigned long long)(r % 100000),
                     (unsigned long long)((r >> 32) % 100));
      } else {
        uint64_t r = next_random();
        p += sprintf(p, "20%02llu-%02llu-%02llu", (unsigned long long)(r % 30),
                     (unsigned long long)((r >> 16) % 12 + 1), (unsigned long long)((r >> 32) % 28 + 1));
      }
      ++in_line;
    }
    used = (size_t)(p - buf);
    if (used >= kBuf || used >= left) {
      size_t n = used < left ? used : (size_t)left;
      if (fwrite(buf, 1, n, stdout) != n) {
        perror("textgen: write");
        return 1;
      }
      left -= n;
      memmove(buf, buf + n, used - n);
      used -= n;
    }
  }
  if (fflush(stdout) != 0) {
    perror("textgen: write");
    return 1;
  }
  return 0;
}
