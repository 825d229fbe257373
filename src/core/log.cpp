#include "core/log.h"

namespace vela {

LogLevel& log_level() {
    static LogLevel level = LogLevel::Warn;
    return level;
}

}  // namespace vela
