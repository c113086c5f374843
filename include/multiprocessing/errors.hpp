// Python's multiprocessing exception names, rooted in the standard hierarchy so that
// `catch (const std::exception&)` catches all of them.
#pragma once

#include <stdexcept>
#include <string>

namespace multiprocessing {

// Python: multiprocessing.ProcessError
class ProcessError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Python: multiprocessing.BufferTooShort (carries the whole message, as Python's args[0] does)
class BufferTooShort : public ProcessError {
public:
    explicit BufferTooShort(std::string message, std::string data = {})
        : ProcessError(std::move(message)), data_(std::move(data)) {}
    const std::string& data() const noexcept { return data_; }

private:
    std::string data_;
};

// Python: multiprocessing.AuthenticationError
class AuthenticationError : public ProcessError {
public:
    using ProcessError::ProcessError;
};

// Python: multiprocessing.TimeoutError (raised by AsyncResult.get(timeout))
class TimeoutError : public ProcessError {
public:
    using ProcessError::ProcessError;
};

// Python: queue.Empty
class Empty : public std::runtime_error {
public:
    Empty() : std::runtime_error("queue is empty") {}
    using std::runtime_error::runtime_error;
};

// Python: queue.Full
class Full : public std::runtime_error {
public:
    Full() : std::runtime_error("queue is full") {}
    using std::runtime_error::runtime_error;
};

// Python: threading.BrokenBarrierError
class BrokenBarrierError : public std::runtime_error {
public:
    BrokenBarrierError() : std::runtime_error("barrier is broken") {}
    using std::runtime_error::runtime_error;
};

// Python: EOFError, raised by Connection.recv when the other end is closed and nothing is left.
class EOFError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Misuse that Python reports as ValueError or AssertionError (start twice, use after close).
class ValueError : public std::logic_error {
public:
    using std::logic_error::logic_error;
};

// Bytes from another process that do not decode as the expected type: truncated, corrupted,
// or sent as another type (the message names both).
class SerializationError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// An exception from another process that cannot be rebuilt as its own type.
class RemoteError : public ProcessError {
public:
    RemoteError(std::string type_name, std::string message)
        : ProcessError(type_name + ": " + message),
          type_name_(std::move(type_name)),
          message_(std::move(message)) {}
    const std::string& type_name() const noexcept { return type_name_; }
    const std::string& message() const noexcept { return message_; }

private:
    std::string type_name_;
    std::string message_;
};

}  // namespace multiprocessing
