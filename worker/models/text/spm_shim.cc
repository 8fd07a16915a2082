// spm_shim.cc: the extern "C" shim over sentencepiece_processor.h (see spm_shim.h).
//
// The only C++ in wanfarm. Rules kept here: every function is noexcept in effect (a try/catch
// around the whole body), nothing C++ appears in the header, and memory handed to C is malloc'd.
#include "spm_shim.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

struct spm_model {
    sentencepiece::SentencePieceProcessor sp;
};

static void set_err(char *err, size_t errlen, const std::string &msg) {
    if (!err || errlen == 0) return;
    size_t n = msg.size() < errlen - 1 ? msg.size() : errlen - 1;
    std::memcpy(err, msg.data(), n);
    err[n] = '\0';
}

extern "C" spm_model *spm_load(const char *path, char *err, size_t errlen) {
    spm_model *m = nullptr;
    try {
        m = new spm_model;
        auto st = m->sp.Load(path);
        if (!st.ok()) {
            set_err(err, errlen, st.ToString());
            delete m;
            return nullptr;
        }
        return m;
    } catch (const std::exception &e) {
        set_err(err, errlen, std::string("sentencepiece: ") + e.what());
    } catch (...) {
        set_err(err, errlen, "sentencepiece: unknown C++ exception while loading");
    }
    delete m;
    return nullptr;
}

extern "C" void spm_free(spm_model *m) {
    try {
        delete m;
    } catch (...) {
    }
}

extern "C" long spm_encode(const spm_model *m, const char *text, size_t len, int **ids, char *err,
                           size_t errlen) {
    *ids = nullptr;
    try {
        std::vector<int> v;
        auto st = m->sp.Encode(std::string_view(text, len), &v);
        if (!st.ok()) {
            set_err(err, errlen, st.ToString());
            return -1;
        }
        if (v.empty()) return 0;
        int *out = static_cast<int *>(std::malloc(v.size() * sizeof(int)));
        if (!out) {
            set_err(err, errlen, "out of memory");
            return -2;
        }
        std::memcpy(out, v.data(), v.size() * sizeof(int));
        *ids = out;
        return static_cast<long>(v.size());
    } catch (const std::exception &e) {
        set_err(err, errlen, std::string("sentencepiece: ") + e.what());
    } catch (...) {
        set_err(err, errlen, "sentencepiece: unknown C++ exception while encoding");
    }
    return -3;
}

extern "C" int spm_vocab_size(const spm_model *m) {
    try {
        return m->sp.GetPieceSize();
    } catch (...) {
        return 0;
    }
}

extern "C" int spm_piece_to_id(const spm_model *m, const char *piece) {
    try {
        return m->sp.PieceToId(piece);
    } catch (...) {
        return -1;
    }
}

extern "C" int spm_id_to_piece(const spm_model *m, int id, char *buf, size_t buflen) {
    try {
        if (id < 0 || id >= m->sp.GetPieceSize()) return -1;
        set_err(buf, buflen, m->sp.IdToPiece(id));
        return 0;
    } catch (...) {
        return -1;
    }
}

extern "C" int spm_is_control(const spm_model *m, int id) {
    try {
        return id >= 0 && id < m->sp.GetPieceSize() && m->sp.IsControl(id);
    } catch (...) {
        return 0;
    }
}

extern "C" int spm_is_unknown(const spm_model *m, int id) {
    try {
        return id >= 0 && id < m->sp.GetPieceSize() && m->sp.IsUnknown(id);
    } catch (...) {
        return 0;
    }
}

extern "C" int spm_is_byte(const spm_model *m, int id) {
    try {
        return id >= 0 && id < m->sp.GetPieceSize() && m->sp.IsByte(id);
    } catch (...) {
        return 0;
    }
}

extern "C" int spm_unk_id(const spm_model *m) {
    try {
        return m->sp.unk_id();
    } catch (...) {
        return -1;
    }
}

extern "C" int spm_eos_id(const spm_model *m) {
    try {
        return m->sp.eos_id();
    } catch (...) {
        return -1;
    }
}

extern "C" int spm_pad_id(const spm_model *m) {
    try {
        return m->sp.pad_id();
    } catch (...) {
        return -1;
    }
}

namespace {
// The training sentences: the lines of one text, no temporary file.
class LineIterator : public sentencepiece::SentenceIterator {
  public:
    explicit LineIterator(const char *text) : in_(text) { Next(); }
    bool done() const override { return done_; }
    void Next() override {
        while (std::getline(in_, line_))
            if (!line_.empty()) return;
        done_ = true;
    }
    const std::string &value() const override { return line_; }
    sentencepiece::util::Status status() const override { return {}; }

  private:
    std::istringstream in_;
    std::string line_;
    bool done_ = false;
};
} // namespace

extern "C" int spm_train_model(const char *text, const char *model_path, int vocab, char *err,
                               size_t errlen) {
    try {
        sentencepiece::SetRandomGeneratorSeed(1234u);
        LineIterator it(text);
        std::string proto;
        std::string args = "--model_type=unigram --vocab_size=" + std::to_string(vocab) +
                           " --pad_id=0 --eos_id=1 --unk_id=2 --bos_id=-1"
                           " --pad_piece=<pad> --eos_piece=</s> --unk_piece=<unk>"
                           " --hard_vocab_limit=false --num_threads=1 --character_coverage=1.0"
                           " --minloglevel=2";
        // The trainer logs its command line to stderr before it reads --minloglevel: stderr is
        // pointed at /dev/null for the duration (failures still come back in the status).
        std::fflush(stderr);
        int saved = dup(2), null = open("/dev/null", O_WRONLY);
        if (saved >= 0 && null >= 0) dup2(null, 2);
        auto st = sentencepiece::SentencePieceTrainer::Train(args, &it, &proto);
        if (saved >= 0 && null >= 0) dup2(saved, 2);
        if (saved >= 0) close(saved);
        if (null >= 0) close(null);
        if (!st.ok()) {
            set_err(err, errlen, "sentencepiece training: " + st.ToString());
            return -1;
        }
        std::ofstream f(model_path, std::ios::binary | std::ios::trunc);
        f.write(proto.data(), static_cast<std::streamsize>(proto.size()));
        f.close();
        if (!f) {
            set_err(err, errlen, std::string(model_path) + ": cannot write the model");
            return -1;
        }
        return 0;
    } catch (const std::exception &e) {
        set_err(err, errlen, std::string("sentencepiece training: ") + e.what());
    } catch (...) {
        set_err(err, errlen, "sentencepiece training: unknown C++ exception");
    }
    return -1;
}
