/**
 * SPEC §7: mastery, levels and struggle detection as a pure reducer over a per-(student, topic)
 * state. The state is plain JSON (no undefined values, no Dates) so it can be stored as one
 * database row / Firestore document. Exactly-once application and the "once per learner, topic,
 * reason and day" de-duplication of struggle signals are the caller's job.
 */
import type { Interaction } from './interaction.ts';

export interface ExerciseState {
  /** Number of attempts seen. */
  attempted: number;
  /** Number of passing attempts seen. */
  passed: number;
  /** Earliest attempt, ISO 8601 UTC. */
  firstAttemptAt: string;
  /** Latest passing attempt, ISO 8601 UTC; absent until the first pass. */
  lastPassAt?: string;
}

export interface TopicState {
  interactions: number;
  exercises: Record<string, ExerciseState>;
  quiz: { sum: number; count: number };
  codeQuality: { sum: number; count: number };
  /** Daily activity streak in UTC days; null before the first interaction. */
  streak: { lastDay: string; days: number } | null;
  /** Run of consecutive failed executions with the same errorType; null when there is none. */
  errorRun: { type: string; count: number } | null;
  /** Consecutive failed executions (any error). */
  failedRun: number;
}

export type StruggleReason =
  | 'repeated_error'
  | 'failed_executions'
  | 'low_quiz_score'
  | 'stuck'
  | 'exercise_time';
export interface Struggle {
  reason: StruggleReason;
  detail: string;
}

export type Level = 'beginner' | 'learning' | 'proficient' | 'mastered';
export interface Mastery {
  mastery: number;
  level: Level;
  components: { exercise: number; quiz: number; quality: number; consistency: number };
}

export const THRESHOLDS = {
  repeatedError: 3,
  failedExecutions: 5,
  lowQuizScore: 0.5,
  exerciseTimeMs: 10 * 60 * 1000,
  streakDays: 7,
} as const;

/** "I'm stuck" in English and German. Text is NFC-normalised before matching. */
const STUCK =
  /stuck|(?<!\p{L})i(?:['’]?m|\s+am)\s+(?:\p{L}+\s+)?lost(?!\p{L})|can['’]?t\s+figure|(?:don['’]?t|do\s+not)\s+(?:get|understand)\s+(?:it|this)|no\s+idea\s+how|komm(?:e)?\s+(?:\p{L}+\s+){0,2}nicht\s+(?:mehr\s+)?weiter|h(?:ä|ae)ng(?:e)?\s+(?:\p{L}+\s+){0,2}fest|steck(?:e)?\s+(?:\p{L}+\s+){0,2}fest|wei(?:ß|ss)\s+(?:\p{L}+\s+){0,2}nicht\s+(?:mehr\s+)?weiter|keine\s+ahnung\s+wie/iu;

export const saysStuck = (text: string): boolean => STUCK.test(text.normalize('NFC'));

export const emptyState = (): TopicState => ({
  interactions: 0,
  exercises: {},
  quiz: { sum: 0, count: 0 },
  codeQuality: { sum: 0, count: 0 },
  streak: null,
  errorRun: null,
  failedRun: 0,
});

const DAY_MS = 86_400_000;
const utcDay = (ms: number): string => new Date(ms).toISOString().slice(0, 10);
const dayNumber = (day: string): number => Date.parse(`${day}T00:00:00Z`) / DAY_MS;

function nextStreak(streak: TopicState['streak'], day: string): TopicState['streak'] {
  if (!streak) return { lastDay: day, days: 1 };
  const gap = dayNumber(day) - dayNumber(streak.lastDay);
  if (gap <= 0) return streak; // same day, or a late event for an earlier day
  return { lastDay: day, days: gap === 1 ? streak.days + 1 : 1 };
}

/**
 * Applies one interaction (already assigned to this state's student and topic). Pure: returns a
 * new state and the struggle signals the interaction raises.
 */
export function apply(
  state: TopicState,
  interaction: Interaction,
): { state: TopicState; struggles: Struggle[] } {
  const at = Date.parse(interaction.occurredAt);
  const next: TopicState = {
    ...state,
    interactions: state.interactions + 1,
    streak: nextStreak(state.streak, utcDay(at)),
  };
  const struggles: Struggle[] = [];

  switch (interaction.kind) {
    case 'exercise_attempt': {
      const { exerciseId, passed } = interaction.payload;
      const iso = new Date(at).toISOString();
      const prev = Object.hasOwn(state.exercises, exerciseId) ? state.exercises[exerciseId] : undefined;
      const ex: ExerciseState = {
        attempted: (prev?.attempted ?? 0) + 1,
        passed: (prev?.passed ?? 0) + (passed ? 1 : 0),
        firstAttemptAt: prev && Date.parse(prev.firstAttemptAt) <= at ? prev.firstAttemptAt : iso,
      };
      const lastPass =
        passed && !(prev?.lastPassAt && Date.parse(prev.lastPassAt) > at) ? iso : prev?.lastPassAt;
      if (lastPass) ex.lastPassAt = lastPass;
      next.exercises = { ...state.exercises, [exerciseId]: ex };
      const elapsed = at - Date.parse(ex.firstAttemptAt);
      if (!passed && ex.passed === 0 && elapsed > THRESHOLDS.exerciseTimeMs) {
        const minutes = Math.floor(elapsed / 60_000);
        struggles.push({
          reason: 'exercise_time',
          detail: `exercise ${exerciseId}: ${minutes} min of attempts without a pass`,
        });
      }
      break;
    }
    case 'quiz_answer': {
      const { score, quizId } = interaction.payload;
      next.quiz = { sum: state.quiz.sum + score, count: state.quiz.count + 1 };
      if (score < THRESHOLDS.lowQuizScore) {
        struggles.push({
          reason: 'low_quiz_score',
          detail: `quiz ${quizId}: score ${score} < ${THRESHOLDS.lowQuizScore}`,
        });
      }
      break;
    }
    case 'code_submission': {
      const { codeQuality } = interaction.payload;
      if (codeQuality !== undefined) {
        next.codeQuality = { sum: state.codeQuality.sum + codeQuality, count: state.codeQuality.count + 1 };
      }
      break;
    }
    case 'code_execution': {
      const { ok, errorType } = interaction.payload;
      if (ok) {
        next.errorRun = null;
        next.failedRun = 0;
        break;
      }
      next.failedRun = state.failedRun + 1;
      // A failure without an errorType breaks a run of equal error types.
      next.errorRun = errorType
        ? { type: errorType, count: state.errorRun?.type === errorType ? state.errorRun.count + 1 : 1 }
        : null;
      if (next.errorRun && next.errorRun.count % THRESHOLDS.repeatedError === 0) {
        struggles.push({
          reason: 'repeated_error',
          detail: `${errorType} ${next.errorRun.count} times in a row`,
        });
      }
      if (next.failedRun % THRESHOLDS.failedExecutions === 0) {
        struggles.push({
          reason: 'failed_executions',
          detail: `${next.failedRun} failed executions in a row`,
        });
      }
      break;
    }
    case 'help_request':
    case 'dialogue_turn': {
      const p = interaction.payload;
      const fromStudent = !('role' in p) || p.role === 'student';
      if (fromStudent && saysStuck(p.text)) {
        struggles.push({ reason: 'stuck', detail: `${interaction.kind} says the learner is stuck` });
      }
      break;
    }
    default:
      break;
  }
  return { state: next, struggles };
}

/**
 * Rounds to one decimal, half up, without float artefacts: the value is first snapped to an
 * integer number of millionths (removing noise such as 40.049999999999997 for 40.05), then
 * rounded. Snapping at 1e-6 rather than 1e-3 avoids double rounding (40.0496 stays 40.0).
 */
export const round1 = (x: number): number => Math.round(Math.round(x * 1e6) / 1e5) / 10;

export const levelFor = (mastery: number): Level =>
  mastery <= 40 ? 'beginner' : mastery <= 70 ? 'learning' : mastery <= 90 ? 'proficient' : 'mastered';

/** SPEC §7 mastery; a component without data counts 0. */
export function mastery(state: TopicState): Mastery {
  const exercises = Object.values(state.exercises);
  const components = {
    exercise: exercises.length ? exercises.filter((e) => e.passed > 0).length / exercises.length : 0,
    quiz: state.quiz.count ? state.quiz.sum / state.quiz.count : 0,
    quality: state.codeQuality.count ? state.codeQuality.sum / state.codeQuality.count : 0,
    consistency: Math.min(1, (state.streak?.days ?? 0) / THRESHOLDS.streakDays),
  };
  const raw =
    100 *
    (0.4 * components.exercise +
      0.3 * components.quiz +
      0.2 * components.quality +
      0.1 * components.consistency);
  const value = round1(raw);
  return { mastery: value, level: levelFor(value), components };
}
