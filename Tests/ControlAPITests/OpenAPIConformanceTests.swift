// ControlAPITests: the server against docs/api.yaml: the same routes and
// methods, and every answer (success and error) valid against the documented
// schema: types, required keys, enums, patterns, and no undocumented keys.
@testable import ControlAPI
import Foundation
import NIOHTTP1
import Testing
import Yams

/// A JSON value as the server sent it (booleans, integers and numbers kept apart).
indirect enum JSONValue: Decodable {
    case null, bool(Bool), integer(Int64), number(Double), string(String), array([JSONValue]), object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let value = try? container.decode(Bool.self) { self = .bool(value) }
        else if let value = try? container.decode(Int64.self) { self = .integer(value) }
        else if let value = try? container.decode(Double.self) { self = .number(value) }
        else if let value = try? container.decode(String.self) { self = .string(value) }
        else if let value = try? container.decode([JSONValue].self) { self = .array(value) }
        else { self = .object(try container.decode([String: JSONValue].self)) }
    }
}

/// openapi-spec-validator (PyPI), which checks a document against the
/// OpenAPI 3.0 meta-schema, run through python3 when it is installed.
enum SpecValidator {
    static let available: Bool = (try? run("import openapi_spec_validator").status) == 0

    static func run(_ script: String, _ arguments: String...) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script] + arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = out
        try process.run()
        let output = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }
}

/// docs/api.yaml, parsed, with a structural schema check.
struct APIDocument {
    let root: [String: Any]

    /// Tests/ControlAPITests/<this file> → the repository's docs/api.yaml.
    static let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("docs/api.yaml").path

    static func load() throws -> APIDocument {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        guard let parsed = try Yams.load(yaml: text) as? [String: Any] else { throw TestFailure("docs/api.yaml is not a mapping") }
        return APIDocument(root: parsed)
    }

    var paths: [String: [String: Any]] { (root["paths"] as? [String: Any] ?? [:]).compactMapValues { $0 as? [String: Any] } }

    /// Every (METHOD, path) the document describes.
    var operations: Set<String> {
        var all = Set<String>()
        for (path, item) in paths {
            for method in ["get", "put", "post", "delete", "patch", "head", "options"] where item[method] != nil {
                all.insert("\(method.uppercased()) \(path)")
            }
        }
        return all
    }

    /// Follows `$ref` ("#/components/…") until a plain object.
    func resolve(_ node: [String: Any]) -> [String: Any] {
        guard let reference = node["$ref"] as? String, reference.hasPrefix("#/") else { return node }
        var current: Any = root
        for part in reference.dropFirst(2).split(separator: "/") {
            guard let next = (current as? [String: Any])?[String(part)] else { return [:] }
            current = next
        }
        return resolve(current as? [String: Any] ?? [:])
    }

    /// The documented response of `method path` for `status` (or `default`);
    /// for a method the path does not have (405), the shared Error response.
    func response(_ method: String, _ path: String, status: Int) -> [String: Any]? {
        guard let item = paths[path] else { return nil }
        guard let operation = item[method.lowercased()] as? [String: Any] else {
            return status == 405 ? resolve(["$ref": "#/components/responses/Error"]) : nil
        }
        guard let responses = operation["responses"] as? [String: Any] else { return nil }
        guard let response = (responses["\(status)"] ?? responses["default"]) as? [String: Any] else { return nil }
        return resolve(response)
    }

    /// Problems of `value` against `schema`, each with its place.
    func problems(_ value: JSONValue, _ schemaNode: [String: Any], at place: String = "$") -> [String] {
        let schema = resolve(schemaNode)
        if case .null = value {
            return schema["nullable"] as? Bool == true ? [] : ["\(place): null where the document does not allow it"]
        }
        var found: [String] = []
        switch (schema["type"] as? String, value) {
        case ("object", .object(let members)):
            let properties = (schema["properties"] as? [String: Any] ?? [:]).compactMapValues { $0 as? [String: Any] }
            for key in schema["required"] as? [String] ?? [] where members[key] == nil {
                found.append("\(place): required key \(key) is missing")
            }
            let additional = schema["additionalProperties"] as? [String: Any]
            for (key, member) in members {
                if let property = properties[key] {
                    found += problems(member, property, at: "\(place).\(key)")
                } else if let additional {
                    found += problems(member, additional, at: "\(place).\(key)")
                } else {
                    found.append("\(place): key \(key) is not in the document")
                }
            }
        case ("array", .array(let items)):
            let itemSchema = schema["items"] as? [String: Any] ?? [:]
            for (i, item) in items.enumerated() { found += problems(item, itemSchema, at: "\(place)[\(i)]") }
        case ("string", .string(let text)):
            if let allowed = schema["enum"] as? [String], !allowed.contains(text) {
                found.append("\(place): \(text) is not one of \(allowed)")
            }
            if let pattern = schema["pattern"] as? String, text.range(of: pattern, options: .regularExpression) == nil {
                found.append("\(place): \(text) does not match \(pattern)")
            }
        case ("integer", .integer), ("number", .integer), ("number", .number), ("boolean", .bool):
            break
        case (let type, let value):
            found.append("\(place): \(value) is not of type \(type ?? "(none)")")
        }
        return found
    }
}

@Suite("Control API against docs/api.yaml")
struct OpenAPIConformanceTests {
    @Test func documentDescribesExactlyTheServersRoutesAndMethods() throws {
        let document = try APIDocument.load()
        #expect(document.root["openapi"] as? String == "3.0.3")
        let served = Set(ControlRoute.all.map { "\($0.method.rawValue) \($0.path)" })
        #expect(document.operations == served)
    }

    /// Sends `method path`, checks the answer's status, content type and body
    /// against the document; returns the problems found.
    func check(_ document: APIDocument, socket: String, _ method: HTTPMethod, _ path: String, route: String,
               expecting status: Int, body: Data? = nil, contentType: String? = nil) async throws -> [String] {
        let answer = try await request(socket, method, path, body: body, contentType: contentType)
        var found: [String] = []
        if answer.status != status { found.append("\(method) \(path): status \(answer.status), expected \(status)") }
        guard let response = document.response(method.rawValue, route, status: answer.status) else {
            return found + ["\(method) \(path): status \(answer.status) is not documented"]
        }
        guard let content = response["content"] as? [String: Any] else {
            return found + (answer.body.isEmpty ? [] : ["\(method) \(path): a body where the document has none"])
        }
        let type = answer.headers["content-type"] ?? ""
        guard let media = content[type] as? [String: Any], let schema = media["schema"] as? [String: Any] else {
            return found + ["\(method) \(path): content type \(type) is not documented for \(answer.status)"]
        }
        if type == "application/json" {
            let value = try JSONDecoder().decode(JSONValue.self, from: answer.body)
            found += document.problems(value, schema).map { "\(method) \(path): \($0)" }
        }
        return found
    }

    @Test func everySuccessAnswerMatchesItsSchema() async throws {
        let document = try APIDocument.load()
        let vm = FakeVM()
        try await withServer(vm) { _, socket in
            var found: [String] = []
            found += try await check(document, socket: socket, .GET, "/vm", route: "/vm", expecting: 200)
            found += try await check(document, socket: socket, .GET, "/stats", route: "/stats", expecting: 200)
            found += try await check(document, socket: socket, .GET, "/msrs", route: "/msrs", expecting: 200)
            found += try await check(document, socket: socket, .GET, "/metrics", route: "/metrics", expecting: 200)
            found += try await check(document, socket: socket, .PUT, "/vm/state", route: "/vm/state", expecting: 200,
                                     body: Data(#"{"state":"paused"}"#.utf8), contentType: "application/json")
            found += try await check(document, socket: socket, .GET, "/vcpus/1/registers", route: "/vcpus/{i}/registers", expecting: 200)
            found += try await check(document, socket: socket, .PUT, "/policy", route: "/policy", expecting: 204,
                                     body: Data("default = \"kernel\"\n".utf8), contentType: "application/toml")
            found += try await check(document, socket: socket, .GET, "/migration", route: "/migration", expecting: 200)
            found += try await check(document, socket: socket, .PUT, "/migrate", route: "/migrate", expecting: 202,
                                     body: Data(#"{"to":"unix:/tmp/m.sock","downtime_ms":300,"timeout_s":600,"force":false,"pause_and_copy":true}"#.utf8),
                                     contentType: "application/json")
            found += try await check(document, socket: socket, .GET, "/migration", route: "/migration", expecting: 200)
            found += try await check(document, socket: socket, .PUT, "/vm/shutdown", route: "/vm/shutdown", expecting: 202)
            #expect(found.isEmpty, "\(found.joined(separator: "\n"))")

            // The event stream's head, read raw (it never ends by itself).
            let events = try await RawConnection(path: socket)
            await events.send("GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
            let head = try await events.read(until: "\r\n\r\n", within: .seconds(5)).lowercased()
            #expect(head.hasPrefix("http/1.1 200"))
            #expect(head.contains("content-type: text/event-stream"))
            let documented = document.response("GET", "/events", status: 200)?["content"] as? [String: Any]
            #expect(documented?["text/event-stream"] != nil)
            await events.close()
        }
    }

    @Test func everyErrorAnswerMatchesTheErrorSchema() async throws {
        let document = try APIDocument.load()
        let vm = FakeVM()
        try await withServer(vm) { _, socket in
            var found: [String] = []
            found += try await check(document, socket: socket, .GET, "/vcpus/0/registers", route: "/vcpus/{i}/registers", expecting: 409)
            found += try await check(document, socket: socket, .GET, "/vcpus/x/registers", route: "/vcpus/{i}/registers", expecting: 400)
            found += try await check(document, socket: socket, .GET, "/vcpus/9/registers", route: "/vcpus/{i}/registers", expecting: 404)
            found += try await check(document, socket: socket, .PUT, "/vm/state", route: "/vm/state", expecting: 400,
                                     body: Data("{".utf8), contentType: "application/json")
            found += try await check(document, socket: socket, .PUT, "/vm/state", route: "/vm/state", expecting: 415,
                                     body: Data("{}".utf8), contentType: "text/html")
            found += try await check(document, socket: socket, .PUT, "/vm/state", route: "/vm/state", expecting: 413,
                                     body: Data(repeating: 0x20, count: 5_000), contentType: "application/json")
            found += try await check(document, socket: socket, .PUT, "/policy", route: "/policy", expecting: 422,
                                     body: Data("bogus = 1\n".utf8), contentType: "text/plain")
            found += try await check(document, socket: socket, .POST, "/stats", route: "/stats", expecting: 405)
            found += try await check(document, socket: socket, .PUT, "/migrate", route: "/migrate", expecting: 400,
                                     body: Data(#"{"to":"nowhere"}"#.utf8), contentType: "application/json")
            found += try await check(document, socket: socket, .PUT, "/migrate", route: "/migrate", expecting: 415,
                                     body: Data("{}".utf8), contentType: "text/plain")
            #expect(found.isEmpty, "\(found.joined(separator: "\n"))")

            // Unknown routes answer the shared Error response.
            let unknown = try await request(socket, .GET, "/no/such/route")
            #expect(unknown.status == 404)
            let schema = document.resolve(["$ref": "#/components/schemas/Error"])
            #expect(document.problems(try JSONDecoder().decode(JSONValue.self, from: unknown.body), schema).isEmpty)
        }
    }

    @Test func schemasUseOnlyKeywordsTheCheckerKnows() throws {
        // A stray key (a description broken at a comma in a flow mapping, a
        // misspelt keyword) would otherwise pass unnoticed.
        let document = try APIDocument.load()
        let keywords: Set<String> = ["type", "properties", "required", "items", "additionalProperties", "nullable", "enum",
                                     "pattern", "description", "$ref", "minimum", "maxLength"]
        var found: [String] = []
        func walk(_ schema: [String: Any], _ place: String) {
            for (key, value) in schema {
                if !keywords.contains(key) { found.append("\(place): unknown keyword \(key)") }
                if key == "properties", let properties = value as? [String: Any] {
                    for (name, property) in properties { walk(property as? [String: Any] ?? [:], "\(place).\(name)") }
                } else if key == "items" || key == "additionalProperties", let nested = value as? [String: Any] {
                    walk(nested, "\(place).\(key)")
                }
            }
        }
        let schemas = (document.root["components"] as? [String: Any])?["schemas"] as? [String: Any] ?? [:]
        #expect(!schemas.isEmpty)
        for (name, schema) in schemas { walk(schema as? [String: Any] ?? [:], name) }
        #expect(found.isEmpty, "\(found.joined(separator: "\n"))")
    }

    @Test(.enabled(if: SpecValidator.available,
                   "openapi-spec-validator (PyPI) is not installed: docs/api.yaml NOT checked against the OpenAPI 3.0 meta-schema"))
    func documentIsValidForOpenapiSpecValidator() throws {
        let (status, output) = try SpecValidator.run("""
            import sys
            from openapi_spec_validator import validate
            from openapi_spec_validator.readers import read_from_filename
            validate(read_from_filename(sys.argv[1])[0])
            """, APIDocument.path)
        #expect(status == 0, "\(output)")
    }

    @Test func checkerCatchesAnswersThatDoNotMatch() throws {
        // The checker itself: a wrong type, a missing key and an undocumented key are all found.
        let document = try APIDocument.load()
        let schema = document.resolve(["$ref": "#/components/schemas/VMInfo"])
        let bad = try JSONDecoder().decode(JSONValue.self, from: Data(#"""
            {"state":"sleeping","uptime_seconds":"1","paused_seconds":0,"extra":1,
             "configuration":{"image":"a","mode":"flat","memory_mib":1.5,"vcpus":1,"platform":"bare"}}
            """#.utf8))
        let found = document.problems(bad, schema)
        #expect(found.contains { $0.contains("sleeping is not one of") })
        #expect(found.contains { $0.contains("$.uptime_seconds") })
        #expect(found.contains { $0.contains("key extra is not in the document") })
        #expect(found.contains { $0.contains("$.configuration.memory_mib") })
    }
}
